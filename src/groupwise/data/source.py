"""Where the rows come from: a built-in task or a data file / hub dataset, for the train or held-out split."""

from __future__ import annotations

from typing import Any, Literal

from groupwise.config.schema import DataConfig
from groupwise.data.tasks.catalog import build_task
from groupwise.errors import GroupwiseError

Split = Literal["train", "heldout"]


def load_rows(data: DataConfig, split: Split) -> list[dict[str, Any]]:
    """Rows of `split`: task rows are generated with the data seed; file rows are read and mapped."""
    size = data.train_size if split == "train" else data.heldout_size
    if data.path is not None:
        from groupwise.data.files import load_file_rows

        rows = load_file_rows(data, split)
    else:
        rows = build_task(data.task, split, size, data.seed, **data.task_params)
    if not rows:
        raise GroupwiseError(f"the {split} data is empty", "check data.path / data.task and the split sizes")
    return rows
