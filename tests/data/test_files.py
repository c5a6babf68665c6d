"""Data files and hub datasets: formats, column mapping, held-out splits and clear errors for bad data."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from groupwise.config.schema import DataConfig
from groupwise.data.files import load_file_rows
from groupwise.errors import GroupwiseError

ROWS = [{"prompt": f"What is {i} + 1?", "answer": str(i + 1), "level": i % 3} for i in range(20)]


def _config(path: Path | str, **fields: Any) -> DataConfig:
    fields.setdefault("heldout_fraction", 0.0)
    return DataConfig(task=None, path=str(path), **fields)


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows in the format the file's extension names."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def _error(config: DataConfig, split: str = "train") -> str:
    with pytest.raises(GroupwiseError) as err:
        load_file_rows(config, split)  # type: ignore[arg-type]
    return str(err.value)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_formats_round_trip(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"data{suffix}", ROWS)
    assert load_file_rows(_config(path), "train") == ROWS


def test_csv_round_trips_as_strings(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.csv", ROWS)
    rows = load_file_rows(_config(path), "train")
    assert rows == [{**row, "level": str(row["level"])} for row in ROWS]


def test_json_datasets_style_and_json_lines_named_json(tmp_path: Path) -> None:
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": ROWS[:3]}))
    assert len(load_file_rows(_config(wrapped), "train")) == 3
    lines = tmp_path / "lines.json"
    lines.write_text("".join(json.dumps(row) + "\n" for row in ROWS[:4]))
    assert len(load_file_rows(_config(lines), "train")) == 4


def test_column_mapping_renames_and_keeps_other_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", [{"question": "2+2?", "final": 4, "source": "gsm"}])
    rows = load_file_rows(_config(path, columns={"prompt": "question", "answer": "final"}), "train")
    assert rows == [{"prompt": "2+2?", "answer": "4", "source": "gsm"}]


def test_numeric_answers_become_strings(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", [{"prompt": "a", "answer": 3.0}, {"prompt": "b", "answer": 0.5}])
    assert [row["answer"] for row in load_file_rows(_config(path), "train")] == ["3", "0.5"]


def test_chat_prompts_and_tests_are_accepted(tmp_path: Path) -> None:
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    path = _write(tmp_path / "d.jsonl", [{"prompt": chat, "tests": ["assert f() == 1"]}])
    assert load_file_rows(_config(path), "train")[0]["prompt"] == chat


def test_heldout_is_a_disjoint_seeded_tail(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", ROWS)
    config = _config(path, heldout_fraction=0.25, seed=3)
    train, heldout = load_file_rows(config, "train"), load_file_rows(config, "heldout")
    prompts = {row["prompt"] for row in train}
    assert (len(train), len(heldout)) == (15, 5)
    assert prompts.isdisjoint(row["prompt"] for row in heldout)
    assert train == load_file_rows(config, "train")
    assert heldout != load_file_rows(_config(path, heldout_fraction=0.25, seed=4), "heldout")


def test_heldout_path_and_sizes(tmp_path: Path) -> None:
    train_path = _write(tmp_path / "train.jsonl", ROWS)
    held_path = _write(tmp_path / "test.parquet", [{"q": q, "a": a} for a, q in enumerate("xyz", start=1)])
    config = _config(train_path, heldout_path=str(held_path), columns={"prompt": "q", "answer": "a"},
                     train_size=5, heldout_size=2, heldout_fraction=0.5)
    assert ROWS[5]["prompt"] not in {row["prompt"] for row in load_file_rows(config, "heldout")}
    assert [row["answer"] for row in load_file_rows(config, "heldout")] == ["1", "2"]
    assert load_file_rows(config, "train") == ROWS[:5]  # held-out file given: the training file is whole


def test_no_heldout_left_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", ROWS)
    assert "heldout_fraction" in _error(_config(path, heldout_fraction=0.0), "heldout")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    message = _error(_config(tmp_path / "nope.jsonl"))
    assert "nope.jsonl" in message and "does not exist" in message and " -- " in message


def test_unsupported_extension(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("hi")
    assert "unsupported extension '.txt'" in _error(_config(tmp_path / "d.txt"))


def test_bad_json_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": oops}\n')
    assert "line 3" in _error(_config(path))


def test_malformed_json_and_parquet(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text('[{"prompt": "a"},')
    assert "not valid JSON" in _error(_config(tmp_path / "d.json"))
    (tmp_path / "d.parquet").write_bytes(b"not parquet at all")
    assert "parquet" in _error(_config(tmp_path / "d.parquet"))
    (tmp_path / "s.json").write_text('"just a string"')
    assert "not a list of rows" in _error(_config(tmp_path / "s.json"))


def test_csv_with_ragged_row(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("prompt,answer\na,1\nb,2,extra\n")
    assert "line 3" in _error(_config(tmp_path / "d.csv"))


def test_empty_dataset(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("\n")
    assert "no rows" in _error(_config(tmp_path / "d.jsonl"))


def test_missing_prompt_lists_columns_and_suggests_mapping(tmp_path: Path) -> None:
    message = _error(_config(_write(tmp_path / "d.jsonl", [{"question": "q", "final": "1"}])))
    assert "question, final" in message and "data.columns" in message


def test_mapping_to_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", [{"question": "q"}])
    assert "no column 'query'" in _error(_config(path, columns={"prompt": "query"}))


@pytest.mark.parametrize("row, word", [
    ({"prompt": 5}, "prompt is a int"),
    ({"prompt": [{"role": "user"}]}, "prompt is a list"),
    ({"prompt": "a", "tests": "assert x"}, "column 'tests' is a string that is not a list"),
    ({"prompt": "a", "tests": [1, 2]}, "column 'tests' item 1 is a int"),
    ({"prompt": "a", "answer": None}, "answer is a NoneType"),
    ({"prompt": "a", "answer": [1]}, "answer is a list"),
    ({"prompt": "a", "system": 3}, "system is a int"),
])
def test_wrong_types(tmp_path: Path, row: dict[str, Any], word: str) -> None:
    message = _error(_config(_write(tmp_path / "d.jsonl", [{"prompt": "fine"}, row])))
    assert word in message and "row 2" in message


def test_hub_splits_and_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_hub(name: str, config: str | None, split: str) -> list[dict[str, Any]]:
        calls.append((name, config, split))
        return [{"question": f"{split} {i}", "final": i} for i in range(4)]

    monkeypatch.setattr("groupwise.data.files._load_hub", fake_hub)
    config = _config("hf:org/math", hf_config="main", split="train", heldout_split="test",
                     columns={"prompt": "question", "answer": "final"}, heldout_fraction=0.5)
    assert [row["prompt"] for row in load_file_rows(config, "train")] == [f"train {i}" for i in range(4)]
    assert load_file_rows(config, "heldout")[1] == {"prompt": "test 1", "answer": "1"}
    assert calls == [("org/math", "main", "train"), ("org/math", "main", "test")]


@pytest.mark.timeout(60)
def test_offline_hub_dataset_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    message = _error(_config("hf:groupwise-tests/no-such-dataset-7f3a"))
    assert "groupwise-tests/no-such-dataset-7f3a" in message and "data.path" in message
    assert "\n" not in message and time.monotonic() - start < 45  # no retry loop (the test times out at 60)
