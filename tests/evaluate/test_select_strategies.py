"""Pure selection on a synthetic difficulty file, and the select command's cached re-selection."""

import json

import pytest
from typer.testing import CliRunner

from groupwise.cli.main import app
from groupwise.errors import GroupwiseError
from groupwise.evaluate import jobs
from groupwise.evaluate.selection import (
    Strategy,
    append_difficulty,
    format_histogram,
    histogram,
    learnable_share,
    parse_strategy,
    read_difficulty,
    select_indices,
    selection_size,
)

RATES = [0.5, 0.0, 1.0, 0.25, 0.0, 0.75, 1.0, 0.0, 0.5, 0.125]


@pytest.fixture
def rates_from_file(tmp_path):
    path = tmp_path / "pool.difficulty.jsonl"
    append_difficulty(path, [{"key": f"k{i}", "pass_rate": p, "n": 8} for i, p in enumerate(RATES)])
    with path.open("a") as f:
        f.write('{"key": "torn", "pass_ra')  # an interrupted write is ignored
    cache = read_difficulty(path)
    return [cache[f"k{i}"]["pass_rate"] for i in range(len(RATES))]


def test_hardest_takes_lowest_rates_with_ties_in_dataset_order(rates_from_file):
    assert select_indices(rates_from_file, Strategy("hardest", 0.2)) == [1, 4]  # three 0.0s: the first two
    assert select_indices(rates_from_file, Strategy("hardest", 0.3)) == [1, 4, 7]
    assert select_indices(rates_from_file, Strategy("hardest", 0.4)) == [1, 4, 7, 9]


def test_easiest_middle_random_and_learnable(rates_from_file):
    assert select_indices(rates_from_file, Strategy("easiest", 0.2)) == [2, 6]
    # ranked hardest..easiest: 1 4 7 9 3 0 8 5 2 6; the middle two are ranks 4 and 5
    assert select_indices(rates_from_file, Strategy("middle", 0.2)) == [0, 3]
    picked = select_indices(rates_from_file, Strategy("random", 0.3), seed=1)
    assert len(picked) == 3 and picked == sorted(picked)
    assert picked == select_indices(rates_from_file, Strategy("random", 0.3), seed=1)
    assert select_indices(rates_from_file, Strategy("learnable")) == [0, 3, 5, 8, 9]
    assert learnable_share(rates_from_file) == 0.5


@pytest.mark.parametrize("total, amount, expected", [
    (10, 0.1, 1), (15, 0.1, 2), (14, 0.1, 1), (3, 0.1, 1), (10, 1.0, 10), (10, 25.0, 10), (10, 4.0, 4),
    (0, 0.5, 0),
])
def test_fractions_round_half_up_and_keep_at_least_one(total, amount, expected):
    assert selection_size(total, amount) == expected


def test_parse_strategy_and_its_errors():
    assert parse_strategy("hardest:0.1") == Strategy("hardest", 0.1)
    assert parse_strategy("random:50") == Strategy("random", 50.0)
    assert parse_strategy("learnable") == Strategy("learnable")
    for bad in ("hardest", "hardest:x", "hardest:0", "hardest:1.5", "toughest:0.1", "learnable:0.2"):
        with pytest.raises(GroupwiseError):
            parse_strategy(bad)


def test_histogram_counts_every_rate_once():
    hist = histogram(RATES, bins=9)  # K=8: bins of exact rates
    assert sum(c for _, _, c in hist) == len(RATES)
    assert hist[0][2] == 3 and hist[-1][2] == 2
    assert len(format_histogram(hist).splitlines()) == 9


def test_select_reuses_the_difficulty_file_without_generating(tmp_path, monkeypatch):
    runner = CliRunner()
    args = ["select", "--data", "arithmetic", "--samples", "2", "--set", "model.name=tiny-random",
            "--set", "data.train_size=12", "--set", "rollout.max_new_tokens=4", "--set", "log.progress=false",
            "--set", 'rewards.functions=[{name: format_regex, params: {pattern: "[aeiou]"}}]']
    first = runner.invoke(app, args + ["--keep", "hardest:0.25", "--out", str(tmp_path / "hard.jsonl")])
    assert first.exit_code == 0, first.output
    cache = tmp_path / "arithmetic.difficulty.jsonl"
    assert len(cache.read_text().splitlines()) == 12
    hard = [json.loads(line) for line in (tmp_path / "hard.jsonl").read_text().splitlines()]
    assert len(hard) == 3 and all("pass_rate" in row and "answer" in row for row in hard)

    def no_model(*_, **__):
        raise AssertionError("selection with a cached difficulty file must not load the model")

    monkeypatch.setattr(jobs, "load_configured_model", no_model)
    second = runner.invoke(app, args + ["--keep", "easiest:0.25", "--out", str(tmp_path / "easy.jsonl")])
    assert second.exit_code == 0, second.output
    assert "0 newly estimated" in second.output and "learnable share" in second.output
    easy = [json.loads(line) for line in (tmp_path / "easy.jsonl").read_text().splitlines()]
    assert min(r["pass_rate"] for r in easy) >= max(r["pass_rate"] for r in hard)


def test_select_reports_a_bad_strategy_in_one_line(tmp_path):
    done = CliRunner().invoke(app, ["select", "--keep", "toughest:0.1", "--out", str(tmp_path / "x.jsonl")])
    assert done.exit_code == 2 and "names no strategy" in done.output
