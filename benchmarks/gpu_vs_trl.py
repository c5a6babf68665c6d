"""GPU side by side: groupwise vs TRL's GRPOTrainer on the workload of trl_anchor.py, one process per system.

Llama-3.2-1B shape with random weights, a synthetic 128,256-word tokenizer, 8 prompts x 8 completions,
64-token prompts, completions forced to full length, bf16, gradient checkpointing, beta 0.04, micro-batch 8,
lr 1e-5; ``--mode lora|full``, ``--completion 256|1024``. Needs CUDA; ``--tiny`` runs a scaled-down copy on
CPU to check the code path.

Run: ``python benchmarks/gpu_vs_trl.py --mode lora --completion 256 [--steps 4] [--only groupwise|trl]
[--groupwise-set k=v] [--workdir DIR] [--out results.json]``.

Forcing full length: TRL passes ``min_new_tokens`` to ``generate``; groupwise has no such option, so its
copy of the tokenizer names as EOS a token outside the model's vocabulary (id = vocab size), which the
sampler can never draw: every completion runs to ``max_new_tokens``, checked in the result line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    ChildResult,
    child_env,
    emit,
    failed,
    groupwise_columns,
    machine_info,
    median_steady,
    phase_cells,
    phase_shares,
    ratio,
    report,
    results_table,
    rounded,
    run_child,
    steady,
    write_json,
)

LLAMA_32_1B: dict[str, Any] = {
    "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
    "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True,
}
TINY_LLAMA: dict[str, Any] = LLAMA_32_1B | {
    "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
}
FULL_SIZE = {"prompts": 8, "group": 8, "prompt_len": 64, "micro": 8}
TINY_SIZE = {"prompts": 2, "group": 4, "prompt_len": 16, "micro": 4, "completion": 24}
BETA, LEARNING_RATE, TEMPERATURE = 0.04, 1e-5, 1.0
LORA_R, LORA_ALPHA = 16, 32
SYSTEMS = ("groupwise", "trl")
STOP = "<stop>"  # groupwise's EOS: one id past the model's vocabulary, so it is never sampled


def length_mod7(prompts: list[Any], completions: list[str], completion_ids: Any = None,
                **_: Any) -> list[float]:
    """The anchor's reward: the completion's character count modulo 7 (cheap, and it varies in a group)."""
    return [float(len(c) % 7) for c in completions]


def prompt_rows(n: int, prompt_len: int, words: int) -> list[dict[str, str]]:
    """The anchor's prompts: `prompt_len` words t<k>, k = (i * 7919 + j * 31) % 100000 + 10 (kept < words)."""
    modulus = min(100000, words - 10)
    return [{"prompt": " ".join(f"t{(i * 7919 + j * 31) % modulus + 10}" for j in range(prompt_len))}
            for i in range(n)]


# ---- the shared model and tokenizers (a setup child) -------------------------------------------------------


def build_tokenizer(vocab_size: int, groupwise_eos: bool):
    """make_synth_tokenizer.py's recipe: words t0.. plus <pad>, <eos>, <bos> as the last three ids.

    groupwise_eos: add <stop> at id `vocab_size` (outside the model) and make it the EOS token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(vocab_size - 3)}
    vocab |= {"<pad>": vocab_size - 3, "<eos>": vocab_size - 2, "<bos>": vocab_size - 1}
    if groupwise_eos:
        vocab[STOP] = vocab_size
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>",
                                        eos_token=STOP if groupwise_eos else "<eos>", bos_token="<bos>")
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    return tokenizer


def run_setup(workdir: Path, tiny: bool) -> None:
    """Write the seeded random bf16 model (with groupwise's tokenizer) and TRL's tokenizer under `workdir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = TINY_LLAMA if tiny else LLAMA_32_1B
    vocab = shape["vocab_size"]
    trl_tokenizer = build_tokenizer(vocab, groupwise_eos=False)
    trl_tokenizer.save_pretrained(workdir / "tokenizer-trl")
    config = LlamaConfig(**shape, pad_token_id=trl_tokenizer.pad_token_id,
                         eos_token_id=trl_tokenizer.eos_token_id, bos_token_id=trl_tokenizer.bos_token_id)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # 1.2B weights initialise faster there
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(workdir / "model")
    build_tokenizer(vocab, groupwise_eos=True).save_pretrained(workdir / "model")
    (workdir / "model" / "bench-shape.json").write_text(json.dumps(shape))
    report({"setup": str(workdir)})


# ---- the TRL child -----------------------------------------------------------------------------------------


def run_trl(workdir: Path, a: argparse.Namespace) -> None:
    """The anchor's GRPOTrainer run; peak memory counted from once the trainer is built, as in the anchor."""
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    cuda = torch.cuda.is_available()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    class StepClock(TrainerCallback):
        """Wall time of each optimizer step (generation included) and the metrics TRL logs for it."""

        def __init__(self) -> None:
            self.started = 0.0
            self.step_s: list[float] = []
            self.logs: list[dict[str, float]] = []

        def on_step_begin(self, args, state, control, **kwargs) -> None:
            sync()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs) -> None:
            sync()
            self.step_s.append(time.perf_counter() - self.started)

        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            if logs and "reward" in logs:
                self.logs.append(dict(logs))

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(workdir / "tokenizer-trl")
    model_dir = str(workdir / "model")
    # lora: a bf16 model object, as the anchor; full: a path, so TRL builds its own reference copy
    model: Any = model_dir
    if a.mode == "lora":
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    words = json.loads((workdir / "model" / "bench-shape.json").read_text())["vocab_size"] - 3
    dataset = Dataset.from_list(prompt_rows(a.prompts * (a.steps + 2), a.prompt_len, words))

    def reward(completions: list[str], **_: Any) -> list[float]:
        return [float(len(c) % 7) for c in completions]

    peft_config = None
    if a.mode == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as out:
        args = GRPOConfig(
            output_dir=out, per_device_train_batch_size=a.micro,
            gradient_accumulation_steps=a.prompts * a.group // a.micro, num_generations=a.group,
            max_completion_length=a.completion, beta=BETA, bf16=True, gradient_checkpointing=True,
            max_steps=a.steps, logging_steps=1, report_to="none", save_strategy="no",
            learning_rate=LEARNING_RATE, generation_kwargs={"min_new_tokens": a.completion}, use_vllm=False,
            temperature=TEMPERATURE,
            model_init_kwargs={"dtype": torch.bfloat16} if a.mode == "full" else None, use_cpu=not cuda)
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                              processing_class=tokenizer, peft_config=peft_config)
        clock = StepClock()
        trainer.add_callback(clock)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    report({"system": "trl", "version": trl.__version__, "step_s": [round(s, 3) for s in clock.step_s],
            "completion_len": [log.get("completions/mean_length") for log in clock.logs],
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "device": torch.cuda.get_device_name() if cuda else "cpu"})


# ---- the groupwise child -----------------------------------------------------------------------------------


def groupwise_config(workdir: Path, data_path: Path, a: argparse.Namespace, device: str) -> dict[str, Any]:
    """The groupwise job matching the anchor: same model file, prompts, shapes, precision and optimizer."""
    return {
        "model": {"name": str(workdir / "model"), "dtype": "bfloat16", "device": device,
                  "gradient_checkpointing": True},
        "lora": {"enabled": a.mode == "lora", "r": LORA_R, "alpha": LORA_ALPHA, "dropout": 0.0,
                 "target_modules": "all-linear"},
        "data": {"task": None, "path": str(data_path), "chat_template": False, "heldout_fraction": 0.0},
        "rewards": {"functions": [{"name": f"{Path(__file__).resolve()}:length_mod7"}], "workers": 1},
        "algorithm": {"preset": "grpo", "beta": BETA},
        "rollout": {"prompts_per_step": a.prompts, "group_size": a.group, "max_new_tokens": a.completion,
                    "temperature": TEMPERATURE, "dtype": "bfloat16"},
        "train": {"steps": a.steps, "learning_rate": LEARNING_RATE, "micro_batch_size": a.micro, "bf16": True,
                  "seed": 0},
        "eval": {"before_after": False},
        "log": {"progress": False, "samples_per_step": 0},
    }


def run_groupwise(workdir: Path, a: argparse.Namespace) -> None:
    """groupwise's `train` on the same model and prompts; peak memory counted over the whole process."""
    import torch
    import yaml

    import groupwise
    from groupwise.config.load import build_config
    from groupwise.train.loop import training_loop

    cuda = torch.cuda.is_available()
    words = json.loads((workdir / "model" / "bench-shape.json").read_text())["vocab_size"] - 3
    with tempfile.TemporaryDirectory(prefix="bench-groupwise-") as tmp:
        data_path = Path(tmp) / "prompts.jsonl"
        rows = prompt_rows(a.prompts * (a.steps + 2), a.prompt_len, words)
        data_path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        config_path = Path(tmp) / "config.yaml"
        config = groupwise_config(workdir, data_path, a, "cuda" if cuda else "cpu")
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        cfg = build_config(config_path, a.groupwise_set)
        training_loop(cfg, Path(tmp) / "run")
        columns = groupwise_columns(Path(tmp) / "run", truncated_fraction="truncated_fraction")

    report({"system": "groupwise", "version": groupwise.__version__, "overrides": a.groupwise_set,
            **columns,
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "device": torch.cuda.get_device_name() if cuda else "cpu"})


# ---- the parent --------------------------------------------------------------------------------------------


def summarize(child: ChildResult, name: str, a: argparse.Namespace) -> dict[str, Any]:
    """One system's result line: steady-step median, peak GPU memory, tokens/s, (groupwise) phase shares."""
    if error := failed(child, name):
        return error
    record = child.record
    step_s = record["step_s"]
    median = median_steady(step_s)
    lengths = [x for x in record["completion_len"] if x is not None]
    out = {"system": name, "version": record["version"], "device": record["device"], "steps": len(step_s),
           "median_step_s": rounded(median), "step_s": step_s, "peak_gib": record["peak_gib"],
           "tokens_per_s": rounded(a.prompts * a.group * a.completion / median, 1) if median else None,
           "completion_len": lengths, "full_length": bool(lengths) and min(lengths) >= a.completion,
           "peak_rss_mib": round(child.peak_rss_mib), "wall_s": round(child.wall_s, 1)}
    if name == "groupwise":
        generate = sum(steady(record["generate_s"]))
        tokens = a.prompts * a.group * a.completion * len(steady(step_s))
        out["gen_only_tokens_per_s"] = rounded(tokens / generate, 1) if generate else None
        out["share"] = phase_shares(record)
        out["overrides"] = record["overrides"]
    return out


def table(results: list[dict[str, Any]]) -> str:
    """The markdown summary of the systems that ran."""
    headers = ["system", "s/step (median, steps 2..n)", "peak GiB", "tok/s (step wall)", "tok/s (generation)",
               "generate", "ref+old logprobs", "update", "reward", "full length"]
    return results_table(headers, results, lambda r: [r["median_step_s"], r["peak_gib"], r["tokens_per_s"],
                                                      r.get("gen_only_tokens_per_s"), *phase_cells(r),
                                                      r["full_length"]])


def compare(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """TRL / groupwise for time and memory: above 1 favours groupwise."""
    gw, peer = results["groupwise"], results["trl"]
    return {"ratio": {"step_s_trl_over_groupwise": ratio(peer.get("median_step_s"), gw.get("median_step_s")),
                      "peak_gib_trl_over_groupwise": ratio(peer.get("peak_gib"), gw.get("peak_gib"))}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("lora", "full"), default="lora")
    parser.add_argument("--completion", type=int, default=256, help="completion tokens (anchor: 256, 1024)")
    parser.add_argument("--steps", type=int, default=4, help="steps per system (the first is warm-up)")
    parser.add_argument("--only", choices=SYSTEMS, help="run one system only")
    parser.add_argument("--groupwise-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra groupwise override, repeatable")
    parser.add_argument("--tiny", action="store_true", help="scaled-down model and batch; runs on CPU")
    parser.add_argument("--workdir", help="keep the random model and tokenizers here and reuse them")
    parser.add_argument("--out", help="also write every result to this JSON file")
    parser.add_argument("--worker", choices=(*SYSTEMS, "setup"), help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    if a.steps < 1:
        parser.error("--steps must be at least 1")
    for key, value in (TINY_SIZE if a.tiny else FULL_SIZE).items():
        setattr(a, key.replace("-", "_"), value)
    if (a.prompts * a.group) % a.micro:
        parser.error("the micro-batch must divide prompts x group")
    return a


def worker_args(a: argparse.Namespace) -> list[str]:
    """The flags a child needs to rebuild the parent's settings."""
    out = ["--mode", a.mode, "--completion", str(a.completion), "--steps", str(a.steps)]
    out += ["--tiny"] if a.tiny else []
    return out + [item for override in a.groupwise_set for item in ("--groupwise-set", override)]


def ensure_model(workdir: Path, a: argparse.Namespace) -> bool:
    """Build the random model and tokenizers in `workdir` unless a matching set is already there."""
    marker = workdir / "model" / "bench-shape.json"
    shape = TINY_LLAMA if a.tiny else LLAMA_32_1B
    if marker.is_file() and json.loads(marker.read_text()) == shape and (workdir / "tokenizer-trl").is_dir():
        return True
    setup = run_child([sys.executable, str(Path(__file__).resolve()), "--worker", "setup",
                       "--workdir", str(workdir)] + worker_args(a), child_env(None))
    if setup.returncode != 0:
        print(f"error: building the random model in {workdir} failed (exit code {setup.returncode})",
              file=sys.stderr)
        return False
    return True


def compare_systems(workdir: Path, a: argparse.Namespace) -> int:
    """Run the chosen systems one after the other on the model in `workdir` and print the results."""
    header = {"machine": machine_info(),
              "workload": {"mode": a.mode, "completion": a.completion, "prompts": a.prompts, "group": a.group,
                           "prompt_len": a.prompt_len, "micro": a.micro, "beta": BETA, "lr": LEARNING_RATE,
                           "steps": a.steps, "tiny": a.tiny, "groupwise_set": a.groupwise_set}}
    emit(header)
    if not ensure_model(workdir, a):
        return 1
    results: dict[str, dict[str, Any]] = {}
    for name in [a.only] if a.only else list(SYSTEMS):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--workdir", str(workdir)]
        results[name] = summarize(run_child(cmd + worker_args(a), child_env(None)), name, a)
        emit(results[name])
    comparison = compare(results) if len(results) == 2 else None
    if comparison:
        emit(comparison)
    print("\n" + table(list(results.values())))
    if a.out:
        write_json(a.out, header | {"results": list(results.values())} | (comparison or {}))
    return 1 if any("error" in r for r in results.values()) else 0


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.worker:
        workdir = Path(a.workdir)
        {"setup": lambda: run_setup(workdir, a.tiny), "trl": lambda: run_trl(workdir, a),
         "groupwise": lambda: run_groupwise(workdir, a)}[a.worker]()
        return 0
    import torch

    if not a.tiny and not torch.cuda.is_available():
        print("error: gpu_vs_trl.py needs a CUDA GPU and none is available (torch.cuda.is_available() is "
              "False); use --tiny for a scaled-down CPU run of the same code path", file=sys.stderr)
        return 2
    if a.workdir:
        Path(a.workdir).mkdir(parents=True, exist_ok=True)
        return compare_systems(Path(a.workdir), a)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        return compare_systems(Path(tmp), a)


if __name__ == "__main__":
    sys.exit(main())
