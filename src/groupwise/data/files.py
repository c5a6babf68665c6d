"""Rows from data files (.jsonl, .json, .parquet, .csv) or hub datasets (``hf:NAME``), renamed and checked.

Every row keeps all its columns (they reach the reward functions); ``data.columns`` renames source
columns to the standard names (``{prompt: question}``). Held-out rows come from ``heldout_path``, the
hub's ``heldout_split``, or else a seeded shuffle of the training file whose last ``heldout_fraction``
share is kept aside.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from groupwise.config.paths import PATH_RULE
from groupwise.config.schema import DataConfig
from groupwise.data.tests_column import InvalidTestsError, dataset_tests, dataset_tests_source, parse_tests
from groupwise.errors import GroupwiseError
from groupwise.runtime.hub import hub_reachable

Row = dict[str, Any]
HUB_PREFIX = "hf:"
EXTENSIONS = (".jsonl", ".json", ".parquet", ".csv")
_TRUE = {"1", "true", "yes", "on"}


def load_file_rows(data: DataConfig, split: Literal["train", "heldout"]) -> list[Row]:
    """The checked rows of ``data.path`` for training, or of the held-out data for evaluation."""
    if not data.path:
        raise GroupwiseError("data.path is not set",
                             "give a local data file or hf:NAME, or use a built-in data.task")
    if split == "train":
        rows = _load_source(data.path, data, data.split, "data.path")
        if not _has_separate_heldout(data):
            rows = _split_off(rows, data.heldout_fraction, data.seed)[0]
        return rows[: data.train_size] if data.train_size else rows
    if split != "heldout":
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    return _heldout_rows(data)[: data.heldout_size]


def _has_separate_heldout(data: DataConfig) -> bool:
    """Whether held-out rows come from their own file or hub split rather than the training file's tail."""
    return bool(data.heldout_path) or (_is_hub(data.path or "") and bool(data.heldout_split))


def _heldout_rows(data: DataConfig) -> list[Row]:
    """Held-out rows from heldout_path, the hub's heldout_split, or the tail of the training file."""
    if data.heldout_path:
        return _load_source(data.heldout_path, data, data.heldout_split or data.split, "data.heldout_path")
    if _has_separate_heldout(data):
        return _load_source(data.path or "", data, data.heldout_split or data.split, "data.path")
    rows = _split_off(_load_source(data.path or "", data, data.split, "data.path"), data.heldout_fraction,
                      data.seed)[1]
    if not rows:
        raise GroupwiseError(f"no held-out rows can be kept aside from '{data.path}' "
                             f"(heldout_fraction={data.heldout_fraction})",
                             "set data.heldout_path, or a heldout_fraction > 0 with at least 2 rows")
    return rows


def _split_off(rows: list[Row], fraction: float, seed: int) -> tuple[list[Row], list[Row]]:
    """A seeded shuffle split into (train, last `fraction` share); with no share the rows stay as they are."""
    held = round(len(rows) * fraction)
    if fraction > 0 and len(rows) >= 2:
        held = min(max(held, 1), len(rows) - 1)
    if held == 0:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    cut = len(rows) - held
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


def _is_hub(path: str) -> bool:
    """Whether `path` names a hub dataset (hf:NAME)."""
    return path.startswith(HUB_PREFIX)


def _load_source(path: str, data: DataConfig, hub_split: str, key: str) -> list[Row]:
    """Raw rows of one file or hub split (`key`: the config key that names it), renamed by ``data.columns`` and
    validated."""
    raw = _load_hub(path[len(HUB_PREFIX):], data.hf_config, hub_split) if _is_hub(path) else _load_local(path, key)
    if not raw:
        raise GroupwiseError(f"data '{path}' has no rows", "give a file with at least one row")
    rows = [_rename(row, data.columns, path, number) for number, row in enumerate(raw, start=1)]
    for number, row in enumerate(rows, start=1):
        _validate(row, path, number)
    return rows


# ---- local files -----------------------------------------------------------------------------------------


def _load_local(path: str, key: str) -> list[Row]:
    """Raw rows of a local file (named by config key `key`), chosen by its extension."""
    file = Path(path).expanduser()
    suffix = file.suffix.lower()
    if suffix not in EXTENSIONS:
        raise GroupwiseError(f"{key}: data file '{path}' has an unsupported extension '{file.suffix}'",
                             f"use one of {', '.join(EXTENSIONS)} or hf:NAME for a hub dataset")
    if not file.is_file():
        raise GroupwiseError(f"{key}: data file '{path}' does not exist", f"fix {key} ({PATH_RULE})")
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet, ".csv": _read_csv}
    try:
        return readers[suffix](file)
    except UnicodeDecodeError as err:
        raise GroupwiseError(f"data file '{path}' is not UTF-8 text ({err.reason})",
                             "save it as UTF-8") from err
    except OSError as err:
        raise GroupwiseError(f"data file '{path}' cannot be read: {err}",
                             "check the file's permissions") from err


def _read_jsonl(file: Path) -> list[Row]:
    """One JSON object per non-blank line; a bad line is reported by its number."""
    rows = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                rows.append(_object(_json_line(line, file, number), file, number))
    return rows


def _json_line(line: str, file: Path, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise GroupwiseError(f"data file '{file}' line {number} is not valid JSON ({err.msg})",
                             "fix that line: each line must be one JSON object") from err


def _object(value: Any, file: Path, number: int) -> Row:
    if not isinstance(value, dict):
        raise GroupwiseError(f"data file '{file}' row {number} is a {type(value).__name__}, not an object",
                             "write each row as a JSON object like {\"prompt\": ...}")
    return value


def _read_json(file: Path) -> list[Row]:
    """A list of objects, or ``{"data": [...]}``; JSON lines saved as .json are read too."""
    text = file.read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":
            return _read_jsonl(file)
        raise GroupwiseError(f"data file '{file}' is not valid JSON ({err.msg} at line {err.lineno})",
                             "fix the file, or save one object per line as .jsonl") from err
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    if not isinstance(value, list):
        raise GroupwiseError(f"data file '{file}' holds a {type(value).__name__}, not a list of rows",
                             "write a JSON list of objects, or {\"data\": [...]}")
    return [_object(item, file, number) for number, item in enumerate(value, start=1)]


def _read_parquet(file: Path) -> list[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(file).to_pylist()
    except pa.ArrowException as err:
        raise GroupwiseError(f"data file '{file}' is not a readable parquet file ({err})",
                             "re-export it as parquet, or use .jsonl") from err


def _read_csv(file: Path) -> list[Row]:
    """CSV with a header row; every value is a string."""
    rows = []
    with file.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            for row in reader:
                if None in row or None in row.values():
                    raise GroupwiseError(f"data file '{file}' line {reader.line_num} has a different number "
                                         "of fields than the header",
                                         "give every row as many fields as the header")
                rows.append(row)
        except csv.Error as err:
            raise GroupwiseError(f"data file '{file}' line {reader.line_num} is malformed CSV ({err})",
                                 "fix that line, or use .jsonl") from err
    return rows


# ---- hub datasets ----------------------------------------------------------------------------------------


def _load_hub(name: str, config: str | None, split: str) -> list[Row]:
    """Rows of a hub dataset split through ``datasets.load_dataset``; failures become one clear error."""
    import datasets

    try:
        with _offline_mode_from_env(unreachable=not hub_reachable()):
            dataset = datasets.load_dataset(name, config, split=split)
    except ConnectionError as err:
        raise GroupwiseError(f"hub dataset '{name}' cannot be reached (offline or no network: {err})",
                             "check the network, or download it and point data.path at a local file") from err
    except FileNotFoundError as err:
        raise GroupwiseError(f"hub dataset '{name}' was not found ({err})",
                             "check the name after hf:, or point data.path at a local file") from err
    except ValueError as err:
        raise GroupwiseError(f"hub dataset '{name}' (config {config}, split {split}) cannot be loaded: {err}",
                             "check data.hf_config, data.split and data.heldout_split") from err
    return dataset.to_list()


@contextlib.contextmanager
def _offline_mode_from_env(unreachable: bool = False) -> Iterator[None]:
    """Honour HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set after `datasets` was imported (it reads them once); with
    the hub `unreachable`, go offline too: the local cache answers at once instead of a minute of retries."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    variables = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    wanted = unreachable or any(os.environ.get(var, "").strip().lower() in _TRUE for var in variables)
    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    if wanted:
        datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


# ---- renaming and validation -----------------------------------------------------------------------------


def _rename(row: Row, columns: dict[str, str], source: str, number: int) -> Row:
    """A copy of ``row`` with each mapped source column renamed to its standard name; the rest kept."""
    row = dict(row)
    for standard, original in columns.items():
        if original not in row and standard in row:
            continue  # already under the standard name (e.g. a held-out file named differently)
        if original not in row:
            raise GroupwiseError(f"data '{source}' row {number} has no column '{original}' (mapped to "
                                 f"'{standard}'); columns: {', '.join(map(str, row))}",
                                 "fix data.columns to name existing columns")
        row[standard] = row.pop(original)
    return row


def _validate(row: Row, source: str, number: int) -> None:
    """Check prompt/answer/tests/system types in place; numeric answers become strings."""
    where = f"data '{source}' row {number}"
    if "prompt" not in row:
        raise GroupwiseError(f"{where} has no 'prompt' column; columns: {', '.join(map(str, row))}",
                             "map one with data.columns, e.g. {prompt: question}")
    if not _is_prompt(row["prompt"]):
        raise GroupwiseError(f"{where}: prompt is a {type(row['prompt']).__name__}, not a string or a list "
                             "of {role, content} messages", "fix the prompt column")
    if "answer" in row:
        row["answer"] = _answer_text(row["answer"], where)
    _tests_column(row, where)
    if row.get("system") is not None and not isinstance(row["system"], str):
        raise GroupwiseError(f"{where}: system is a {type(row['system']).__name__}, not a string",
                             "give the system message as a string")


def _is_prompt(value: Any) -> bool:
    """A string, or a non-empty list of chat messages with string role and content."""
    if isinstance(value, str):
        return True
    return isinstance(value, list) and bool(value) and all(_is_message(m) for m in value)


def _is_message(value: Any) -> bool:
    """A chat message: a dict with string `role` and `content`."""
    return isinstance(value, dict) and all(isinstance(value.get(key), str) for key in ("role", "content"))


def _tests_column(row: Row, where: str) -> None:
    """``tests`` parsed in place (a list, JSON or Python list text), or mapped from MBPP / HumanEval columns."""
    column = "tests" if "tests" in row else dataset_tests_source(row)
    try:
        if column == "tests":
            row["tests"] = parse_tests(row["tests"])
        elif column is not None:
            row["tests"] = dataset_tests(row)
    except InvalidTestsError as err:
        raise GroupwiseError(f"{where}: column '{column}' {err}",
                             "give tests as a list of test statements: a list, a JSON list like "
                             '["assert f(1) == 2"] or a Python list (docs/data.md)') from err


def _answer_text(value: Any, where: str) -> str:
    """The answer as a string: numbers are converted (integral floats lose their '.0')."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    raise GroupwiseError(f"{where}: answer is a {type(value).__name__}, not a string or a number",
                         "give the answer as a string")
