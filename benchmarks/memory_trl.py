"""TRL's GRPOTrainer measured as benchmarks/memory.py measures groupwise: one child process, the same model and step.

    .venv/bin/python benchmarks/memory.py --tiny --modes lora --trl     # TRL's column beside groupwise's LoRA run

memory.py starts this file as the child of its `--trl` runs (`--child MODE:TOKENS`), for the LoRA modes. The child
builds the same random model (memory.build_model: same shape, seed, dtype and SDPA attention) and hands the object
to GRPOTrainer with groupwise's settings for MODE (memory.settings): LoRA r, alpha and dropout on all linear layers
through `peft_config`, beta, gradient checkpointing (on by default in TRL, so set from the mode either way),
learning rate, temperature and top-p. One prompt (memory.PROMPT) and a group of 8 completions, trained as one
micro-batch, `max_completion_length` and `min_new_tokens` equal to TOKENS: TRL's completions run to the limit, as
groupwise's do with random weights (its mean length is in the record to show it), no vLLM, no bf16 autocast (the
weights carry the dtype groupwise gives them), the parity reward.

Peaks of the last step, measured by memory.PhasePeaks (CPU: VmHWM, reset before each phase; CUDA: max allocated):
load (the model and GRPOTrainer with its adapter; TRL builds AdamW in `train()` and its state on the first step),
sampling (`GRPOTrainer._generate`: tokenizing, `generate()`, decoding), reference (`_get_per_token_logps_and_
entropies` without grad: the adapter-disabled pass; TRL skips the old log-probs pass when it generates every step)
and update (from the return of `_prepare_inputs`, after generation, the reference pass and the rewards, to
`on_optimizer_step`: the loss's forward and backward, clipping and AdamW's step).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import memory
from _common import report


def trl_arguments(cfg, tokens: int, steps: int, output_dir: str, cuda: bool):
    """GRPOConfig with groupwise's settings `cfg`: one prompt, a group as one micro-batch, full-length completions."""
    from trl import GRPOConfig

    return GRPOConfig(output_dir=output_dir, per_device_train_batch_size=memory.GROUP, gradient_accumulation_steps=1,
                      num_generations=memory.GROUP, max_completion_length=tokens,
                      generation_kwargs={"min_new_tokens": tokens}, beta=cfg.algorithm.beta,
                      learning_rate=cfg.train.learning_rate, temperature=cfg.rollout.temperature,
                      top_p=cfg.rollout.top_p, gradient_checkpointing=cfg.model.gradient_checkpointing,
                      gradient_checkpointing_kwargs={"use_reentrant": False}, bf16=False, use_cpu=not cuda,
                      use_vllm=False, max_steps=steps, logging_steps=1, report_to="none", save_strategy="no",
                      disable_tqdm=True, seed=0)


def lora_config(cfg):
    """peft's LoraConfig of groupwise's `cfg.lora`, as groupwise's wrap_policy builds it."""
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")


def measure_generation(trainer, meter: memory.PhasePeaks, lengths: list[tuple[int, float]]) -> None:
    """Sampling's peak, and each generation's prompt length and mean completion length into `lengths`."""
    generate = meter.wrap("sampling", trainer._generate)

    def sampled(prompts: list) -> tuple:
        out = generate(prompts)
        prompt_ids, completion_ids = out[0], out[1]
        lengths.append((len(prompt_ids[0]), sum(map(len, completion_ids)) / len(completion_ids)))
        return out

    trainer._generate = sampled


def measure_reference(trainer, meter: memory.PhasePeaks) -> None:
    """The reference pass's peak: the log-prob passes that run without grad (the loss's runs with it)."""
    import torch

    logprobs = trainer._get_per_token_logps_and_entropies
    reference = meter.wrap("reference", logprobs)
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (
        logprobs if torch.is_grad_enabled() else reference)(*a, **k)


def measure_update(trainer, meter: memory.PhasePeaks) -> list[int]:
    """The update's start (the batch is ready) and end (the optimizer stepped); returns a box that holds the
    largest gradient bytes seen at an optimizer step."""
    from transformers import TrainerCallback

    from groupwise.runtime.memory import tensor_bytes

    grads = [0]
    prepare = trainer._prepare_inputs

    def prepared(batch: Any) -> Any:
        inputs = prepare(batch)
        meter.begin("update")
        return inputs

    class UpdateEnd(TrainerCallback):
        """Gradient bytes before the optimizer step; the update's peak after it."""

        def on_pre_optimizer_step(self, args, state, control, **kwargs) -> None:
            held = tensor_bytes(p.grad for p in trainer.model.parameters() if p.grad is not None)
            grads[0] = max(grads[0], held)

        def on_optimizer_step(self, args, state, control, **kwargs) -> None:
            meter.end("update")

    trainer._prepare_inputs = prepared
    trainer.add_callback(UpdateEnd())
    return grads


def child(args: argparse.Namespace) -> None:
    """Build the model and GRPOTrainer, train `--steps` steps with every phase measured, and report the record."""
    import torch
    import trl
    from datasets import Dataset
    from trl import GRPOTrainer

    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    mode, tokens = args.child.split(":")
    cfg = memory.settings(mode, tokens, cuda)
    meter = memory.PhasePeaks(cuda)
    baseline = meter.now()
    meter.reset()
    start = time.perf_counter()
    model, tokenizer = memory.load_model(cfg, args.config, cuda)
    lengths: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="memory-trl-") as output_dir:
        trainer = GRPOTrainer(model=model, reward_funcs=memory.parity, processing_class=tokenizer,
                              args=trl_arguments(cfg, int(tokens), args.steps, output_dir, cuda),
                              train_dataset=Dataset.from_list([{"prompt": memory.PROMPT}] * args.steps),
                              peft_config=lora_config(cfg))
        meter.end("load")
        measure_generation(trainer, meter, lengths)
        measure_reference(trainer, meter)
        grads = measure_update(trainer, meter)
        trainer.train()
    optimizer = trainer.optimizer
    report({"system": "trl", "version": trl.__version__, "mode": mode, "tokens": int(tokens),
            "device": "cuda" if cuda else "cpu", "config": args.config, "baseline": baseline, "peaks": meter.peaks,
            "starts": meter.starts, "split": memory.split_parts(trainer.model, optimizer, grads[0], trainer.ref_model),
            "completion_len": [length for _, length in lengths], "prompt_tokens": lengths[-1][0] if lengths else None,
            "steps": args.steps, "seconds": round(time.perf_counter() - start, 1),
            "settings": {"beta": trainer.args.beta, "gradient_checkpointing": trainer.args.gradient_checkpointing,
                         "bf16": trainer.args.bf16, "dtype": str(next(trainer.model.parameters()).dtype),
                         "optimizer": type(getattr(optimizer, "optimizer", optimizer)).__name__}})


def main() -> None:
    """Parse memory.py's child arguments and run the child."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", required=True, help="MODE:TOKENS, a LoRA mode of memory.MODES")
    parser.add_argument("--config", default="tiny", choices=memory.SHAPE_NAMES)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    child(parser.parse_args())


if __name__ == "__main__":
    main()
