"""Issue 15: groupwise.train / evaluate / select / Config from Python on tiny-random, with in-memory data and
reward callables."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import groupwise
from groupwise import Config, GroupwiseError
from groupwise.api.inputs import build_rewards
from groupwise.models.tiny import build_tiny_random

TINY = ["model.name=tiny-random", "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=6",
        "train.micro_batch_size=8", "train.steps=1", "eval.before_after=false", "log.progress=false",
        "model.dtype=float32", "train.bf16=false", "rollout.dtype=float32",
        "log.samples_per_step=0"]
ROWS = [{"prompt": f"{a}+{a}=", "answer": str(2 * a), "operand": a} for a in range(12)]


def parity(prompts, completions, completion_ids=None, **_):
    """1 for an even-length completion: varies inside a group, so the step has something to learn."""
    return [float(len(c) % 2 == 0) for c in completions]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["list", "datasets", "pandas"])
def test_train_on_in_memory_data(kind, tmp_path, one_thread):
    if kind == "list":
        data = ROWS
    elif kind == "datasets":
        import datasets

        data = datasets.Dataset.from_list(ROWS)
    else:
        import pandas

        data = pandas.DataFrame(ROWS)
    seen: list[dict] = []

    def operand_seen(prompts, completions, completion_ids=None, operand=None, answer=None, **_):
        seen.append({"prompt": prompts[0], "operand": operand[0], "answer": answer[0]})
        return [0.0] * len(completions)

    steps: list[int] = []
    run = groupwise.train(None, TINY + ["train.steps=2"], dataset=data, rewards=[parity, operand_seen],
                          run_dir=tmp_path / "run", on_step=lambda step, metrics: steps.append(step))
    assert steps == [1, 2]  # once per step, in order
    assert run.run_dir == tmp_path / "run" and (run.run_dir / "final").is_dir()
    assert run.summary == json.loads((run.run_dir / "summary.json").read_text())
    assert run.model is not None and run.tokenizer is not None
    # the rows were saved with the run and the config names them; callables get each row's own prompt
    saved = [json.loads(line) for line in (run.run_dir / "data" / "train.jsonl").read_text().splitlines()]
    assert saved == ROWS and run.config.data.task is None
    assert run.config.data.path == str((run.run_dir / "data" / "train.jsonl").resolve())
    assert {(s["prompt"], s["operand"], s["answer"]) for s in seen} <= {(r["prompt"], r["operand"], r["answer"])
                                                                        for r in ROWS}
    assert isinstance(seen[0]["operand"], int)
    names = [f.name for f in run.config.rewards.functions]
    assert names == [f"{__name__}:parity", f"{__name__}:test_train_on_in_memory_data.<locals>.operand_seen"]
    assert {"reward/parity/mean", "reward/operand_seen/mean"} <= set(_metrics(run.run_dir)[0])


def test_on_step_false_stops_cleanly(tmp_path, one_thread):
    calls: list[int] = []

    def stop_at_two(step, metrics):
        calls.append(step)
        assert "loss" in metrics and "reward/mean" in metrics
        return step < 2

    run = groupwise.train(None, TINY + ["train.steps=5"], dataset=ROWS, rewards=[parity],
                          run_dir=tmp_path / "run", on_step=stop_at_two)
    assert calls == [1, 2] and run.summary["stopped_at_step"] == 2
    assert len(_metrics(run.run_dir)) == 2 and (run.run_dir / "final" / "adapter_config.json").is_file()


def test_weights_async_rewards_and_a_preloaded_model(tmp_path, one_thread):
    async def always_one(prompts, completions, **_):
        await asyncio.sleep(0)
        return [1.0] * len(completions)

    model, tokenizer = build_tiny_random(seed=0)
    run = groupwise.train({"train": {"steps": 1}}, TINY, dataset=ROWS, rewards=[always_one, parity],
                          reward_weights=[0.5, 0.0], model=model, tokenizer=tokenizer, run_dir=tmp_path / "run")
    row = _metrics(run.run_dir)[0]
    assert row["reward/always_one/mean"] == 1.0
    assert row["reward/mean"] == pytest.approx(0.5)  # 0.5 * 1 + 0.0 * parity
    assert [f.weight for f in run.config.rewards.functions] == [0.5, 0.0]


def test_reward_weights_replace_every_default_a_zero_included():
    functions, entries = build_rewards(["answer_match", {"name": "answer_match", "weight": 3.0}, parity],
                                       [0.0, 0.5, 2.0], Config())
    assert [f.weight for f in functions] == [0.0, 0.5, 2.0]  # a built-in's 0.0 must not fall back to its 1.0
    assert [e["weight"] for e in entries] == [0.0, 0.5, 2.0]
    assert [f.weight for f in build_rewards(["answer_match", parity], None, Config())[0]] == [1.0, 1.0]


def test_raising_reward_follows_on_error(tmp_path, one_thread):
    def broken(prompts, completions, **_):
        raise ValueError("no luck")

    with pytest.raises(GroupwiseError, match="reward function 'broken' failed.*ValueError: no luck"):
        groupwise.train(None, TINY, dataset=ROWS, rewards=[broken, parity], run_dir=tmp_path / "a")
    assert not (tmp_path / "a").exists()  # a failed fresh start leaves no half run
    run = groupwise.train(None, TINY + ["rewards.on_error=zero"], dataset=ROWS, rewards=[broken, parity],
                          run_dir=tmp_path / "b")
    row = _metrics(run.run_dir)[0]
    # counted once per failing batch (at the first sample that raises), each of its samples scored 0
    assert row["reward/broken/errors"] == 1 and row["reward/broken/mean"] == 0.0


BAD = {
    "dataset-string": ({"dataset": "rows.jsonl"}, "dataset= is a str"),
    "dataset-not-dicts": ({"dataset": [1, 2]}, "row 1 is a int"),
    "dataset-empty": ({"dataset": []}, "dataset= has no rows"),
    "no-prompt": ({"dataset": [{"question": "1+1"}]}, "has no 'prompt' column"),
    "weights-length": ({"dataset": ROWS, "rewards": [parity], "reward_weights": [1.0, 2.0]}, "2 values for 1"),
    "weights-alone": ({"dataset": ROWS, "reward_weights": [1.0]}, "reward_weights= needs rewards="),
    "rewards-string": ({"dataset": ROWS, "rewards": "answer_match"}, "rewards= is a str"),
    "rewards-empty": ({"dataset": ROWS, "rewards": []}, "rewards= is empty"),
    "rewards-unknown": ({"dataset": ROWS, "rewards": ["no_such_reward"]}, "unknown reward 'no_such_reward'"),
    "rewards-number": ({"dataset": ROWS, "rewards": [3]}, r"rewards\[0\] is a int"),
    "model-alone": ({"dataset": ROWS, "model": object()}, "model= was given without tokenizer="),
    "heldout-alone": ({"heldout": ROWS}, "heldout= needs dataset="),
    "on-step": ({"dataset": ROWS, "on_step": 3}, "on_step= is a int"),
    "config-type": ({"config": 42}, "config= is a int"),
    "overrides-string": ({"overrides": "train.steps=1"}, "overrides= must be a list"),
    "bad-override": ({"overrides": TINY + ["rollout.group_size=1"]}, "rollout.group_size"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_arguments_one_clear_error(case, tmp_path):
    kwargs, message = BAD[case]
    kwargs = {"config": None, "overrides": TINY} | kwargs
    with pytest.raises(GroupwiseError, match=message) as err:
        groupwise.train(kwargs.pop("config"), kwargs.pop("overrides"), run_dir=tmp_path / "run", **kwargs)
    assert " -- " in str(err.value) and err.value.fix  # names the fix
    assert not (tmp_path / "run").exists()


def test_evaluate_returns_the_pass_at_k_asked(tmp_path, one_thread):
    heldout = [{"prompt": f"{a}+1=", "answer": str(a + 1)} for a in range(3)]

    def by_problem(prompts, completions, **_):
        """Whatever is sampled: 1.0 on 0+1=, 0.5 on 1+1= (under the 1.0 that counts as solved), 0 on 2+1=."""
        return [1.0 if "0+1=" in p else 0.5 if "1+1=" in p else 0.0 for p in prompts]

    result = groupwise.evaluate("tiny-random", heldout, rewards=[by_problem], samples=4, k=[1, 2, 4],
                                overrides=TINY)
    third = pytest.approx(1 / 3)  # one problem of three solved, by every sample and by the greedy answer
    assert result == {"problems": 3, "samples": 4, "greedy_accuracy": third, "pass@1": third, "pass@2": third,
                      "pass@4": third, "mean_pass_rate": third, "learnable_share": 0.0, "sampled_mean_reward": 0.5,
                      "sampled_reward_per_function": {"by_problem": 0.5}, "threshold": 1.0}
    only_one = groupwise.evaluate("tiny-random", heldout, rewards=["answer_match"], k=[2], overrides=TINY)
    assert only_one["samples"] == 2 and [k for k in only_one if k.startswith("pass@")] == ["pass@2"]
    with pytest.raises(GroupwiseError, match="pass@8 needs at least 8 samples"):
        groupwise.evaluate("tiny-random", heldout, samples=4, k=[1, 8], overrides=TINY)


def test_evaluate_a_run_and_a_model_object(tmp_path, one_thread):
    run = groupwise.train(None, TINY + ["data.heldout_fraction=0.25"], dataset=ROWS, rewards=[parity],
                          run_dir=tmp_path / "run")
    result = groupwise.evaluate(run, samples=2, k=[1, 2])  # the run's held-out rows and its own rewards
    assert result["problems"] == 3 and set(result["sampled_reward_per_function"]) == {"parity"}
    model, tokenizer = build_tiny_random(seed=0)
    direct = groupwise.evaluate(model, ROWS[:2], tokenizer=tokenizer, rewards=[parity], samples=1, k=[1],
                                overrides=TINY)
    assert direct["problems"] == 2 and "pass@1" in direct


def test_config_from_yaml_and_override(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("algorithm:\n  preset: dapo\ntrain:\n  steps: 7\n")
    cfg = Config.from_yaml(path)
    assert (cfg.train.steps, cfg.algorithm.eps_high, cfg.algorithm.dynamic_sampling) == (7, 0.28, True)
    other = cfg.override(["train.steps=3", "algorithm.preset=rloo"])
    assert other.train.steps == 3 and cfg.train.steps == 7  # a new Config; the old one is unchanged
    assert (other.algorithm.baseline, other.algorithm.eps_high, other.algorithm.dynamic_sampling) == (
        "leave_one_out", 0.2, False)  # the new preset's knobs replace the old preset's
    assert cfg.override(["algorithm.beta=0.5"]).algorithm.eps_high == 0.28
    with pytest.raises(GroupwiseError, match="unknown config key 'train.stepz'"):
        cfg.override(["train.stepz=1"])
    assert groupwise.resolve_config({"train": {"steps": 2}}, ["rollout.group_size=4"]).train.steps == 2


def test_select_on_rows(tmp_path, one_thread):
    result = groupwise.select(ROWS[:4], out=tmp_path / "kept.jsonl", keep="hardest:2", samples=2, overrides=TINY)
    assert result["rows"] == 4 and result["kept"] == 2
    kept = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert len(kept) == 2 and all("pass_rate" in row for row in kept)
    assert (tmp_path / "kept.difficulty.jsonl").is_file()


def test_package_names_are_functions_and_subpackages():
    import inspect

    import groupwise.train.loop as loop_module

    assert loop_module.__name__ == "groupwise.train.loop"
    assert groupwise.train.loop is loop_module
    assert groupwise.evaluate.heldout_eval.pass_at_k(4, 1, 2) == 0.5  # the subpackage's function: 1 - C(3,2)/C(4,2)
    assert list(inspect.signature(groupwise.train).parameters)[:2] == ["config", "overrides"]
    assert "on_step" in groupwise.train.__doc__ and "pass@" in groupwise.evaluate.__doc__
    assert (Path(groupwise.__file__).parent / "py.typed").is_file()


def test_stop_then_resume_from_python(tmp_path, one_thread):
    run_dir = tmp_path / "run"
    first = groupwise.train(None, TINY + ["train.steps=3"], dataset=ROWS, rewards=[parity], run_dir=run_dir,
                            on_step=lambda step, metrics: step < 1)
    assert first.summary["stopped_at_step"] == 1
    with pytest.raises(GroupwiseError, match="resume=True continues a run"):
        groupwise.train(None, dataset=ROWS, run_dir=run_dir, resume=True)
    steps: list[int] = []
    second = groupwise.train(run_dir=run_dir, resume=True, rewards=[parity],
                             on_step=lambda step, metrics: steps.append(step))
    assert steps == [2, 3] and "stopped_at_step" not in second.summary
    assert [row["step"] for row in _metrics(run_dir)] == [1, 2, 3]
