"""examples/python_api.py's code path, on tiny-random."""

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "python_api.py"
TINY = ["model.name=tiny-random", "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=6",
        "train.micro_batch_size=8", "model.dtype=float32", "train.bf16=false", "rollout.dtype=float32"]


def test_python_api_example_runs(tmp_path, one_thread, capsys):
    spec = importlib.util.spec_from_file_location("python_api_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    # the example's rewards, by hand: the last number decides; the bonus is for short answers
    assert example.correct_sum(None, ["3 + 4 = 7", "7, no 8", ""], answer=["7", "7", "7"]) == [1.0, 0.0, 0.0]
    assert example.brief(None, ["short", "x" * 40]) == [1.0, 0.0]
    result = example.main(TINY, steps=2, run_dir=tmp_path / "run", problems=3, samples=4)
    for label in ("base", "trained"):
        assert result[label]["problems"] == 3 and {"pass@1", "pass@4"} <= set(result[label])
    printed = capsys.readouterr().out
    assert "step 1: reward" in printed and "step 2: reward" in printed and "trained: greedy" in printed
    assert [f.weight for f in result["run"].config.rewards.functions] == [1.0, 0.1]
