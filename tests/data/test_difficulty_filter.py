"""The online difficulty filter: skipping settled prompts, its state, its config and its place in the loop."""

import io
import json
import math

import pytest
import torch
from rich.console import Console

from groupwise.data.difficulty import DifficultyFilter, group_outcome, wrap_with_difficulty_filter
from groupwise.data.stream import PromptStream
from groupwise.errors import GroupwiseError

ROWS = [{"prompt": f"p{i}", "answer": str(i)} for i in range(4)]


def stream():
    return PromptStream(ROWS, [r["prompt"] for r in ROWS], seed=0)


def outcome_rewards(*outcomes: str) -> torch.Tensor:
    values = {"solved": [1.0, 1.0], "failed": [0.0, 0.0], "mixed": [1.0, 0.0]}
    return torch.tensor([values[o] for o in outcomes])


def test_group_outcome():
    assert group_outcome([1.0, 1.5], 1.0) == "solved"
    assert group_outcome([0.0, 0.5], 1.0) == "failed"
    assert group_outcome([0.0, 1.0, math.nan], 1.0) == "mixed"
    assert group_outcome([math.nan], 1.0) == "mixed"


def test_skips_prompts_whose_last_visits_were_all_solved_or_all_failed():
    f = DifficultyFilter(stream(), visits=2)
    f.update([ROWS[0], ROWS[1], ROWS[2]], outcome_rewards("solved", "failed", "solved"))
    f.update([ROWS[0], ROWS[1], ROWS[2]], outcome_rewards("solved", "failed", "mixed"))
    assert f.is_settled(ROWS[0]) and f.is_settled(ROWS[1]) and not f.is_settled(ROWS[2])
    rows, texts = f(4)
    assert {r["prompt"] for r in rows} == {"p2", "p3"} and texts == [r["prompt"] for r in rows]
    metrics = f.after_step([], torch.zeros(0, 2))
    assert metrics["difficulty/skipped"] > 0 and metrics["difficulty/settled"] == 2
    assert f.after_step([], torch.zeros(0, 2))["difficulty/skipped"] == 0  # counted per step


def test_one_mixed_visit_unsettles_and_solved_then_failed_is_not_settled():
    f = DifficultyFilter(stream(), visits=2)
    f.update([ROWS[0]], outcome_rewards("solved"))
    f.update([ROWS[0]], outcome_rewards("failed"))
    assert not f.is_settled(ROWS[0])
    f.update([ROWS[0]], outcome_rewards("failed"))
    assert f.is_settled(ROWS[0])
    f.update([ROWS[0]], outcome_rewards("mixed"))
    assert not f.is_settled(ROWS[0])


def test_gives_up_skipping_when_every_prompt_is_settled():
    f = DifficultyFilter(stream(), visits=1)
    f.update(ROWS, outcome_rewards("solved", "solved", "failed", "failed"))
    rows, _ = f(3)
    assert len(rows) == 3


def test_state_dict_round_trip():
    f = DifficultyFilter(stream(), visits=2)
    f.update([ROWS[0], ROWS[1]], outcome_rewards("solved", "mixed"))
    f.update([ROWS[0], ROWS[1]], outcome_rewards("solved", "mixed"))
    state = json.loads(json.dumps(f.state_dict()))  # checkpoint-friendly: plain JSON
    g = DifficultyFilter(stream(), visits=2)
    g.load_state_dict(state)
    assert g.is_settled(ROWS[0]) and not g.is_settled(ROWS[1]) and g.state_dict() == f.state_dict()


def test_config_validation():
    s = stream()
    assert wrap_with_difficulty_filter(s, None, None) is s
    assert wrap_with_difficulty_filter(s, {"visits": 3}, 0.5).visits == 3
    for bad in ({"visits": 0}, {"visits": "2"}, {"vists": 2}):
        with pytest.raises(GroupwiseError, match="difficulty_filter"):
            wrap_with_difficulty_filter(s, bad, None)


def test_training_logs_skipped_prompts(tiny_config, tmp_path):
    from groupwise.train.loop import training_loop

    cfg = tiny_config("data.train_size=4", "train.steps=3", "data.difficulty_filter={visits: 1}",
                      "log.samples_per_step=0")
    training_loop(cfg, tmp_path / "run", console=Console(file=io.StringIO()))
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("difficulty/skipped" in m for m in metrics)
    # tiny-random never answers correctly: after one visit every prompt is settled (all-wrong) ...
    assert metrics[0]["difficulty/settled"] == 4
    # ... so the filter skips until it has passed every known prompt once, then takes them anyway
    assert metrics[1]["difficulty/skipped"] >= 4
