"""The Python API hides other libraries' deprecation warnings as the CLI does (issue 28), and only theirs."""

from __future__ import annotations

import warnings

import groupwise
from groupwise.runtime.quiet import library_warnings_hidden


def test_train_shows_no_library_future_warning(tiny_config, tmp_path, one_thread):
    overrides = ["model.name=tiny-random", "rollout.prompts_per_step=2", "rollout.group_size=2", "train.steps=1",
                 "train.micro_batch_size=4", "eval.before_after=false", "log.progress=false", "data.train_size=8",
                 "model.dtype=float32", "train.bf16=false", "rollout.dtype=float32", "rollout.max_new_tokens=4"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        groupwise.train(None, overrides, run_dir=tmp_path / "run")
    shown = [f"{w.category.__name__}: {w.message}" for w in caught if issubclass(w.category, FutureWarning)]
    assert shown == []  # peft asked transformers' deprecated `is_gradient_checkpointing` (issue 28)


def test_the_callers_own_warnings_still_show():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with library_warnings_hidden():
            warnings.warn("mine", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["mine"]
