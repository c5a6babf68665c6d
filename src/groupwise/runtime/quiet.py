"""Other libraries' deprecation chatter kept out of a user's view: the CLI (unless --verbose) and the Python API."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

THIRD_PARTY_MODULES = r"(transformers|peft|torch|datasets|huggingface_hub|accelerate|math_verify)(\.|$)"


@contextlib.contextmanager
def library_warnings_hidden() -> Iterator[None]:
    """FutureWarning and DeprecationWarning raised inside the libraries groupwise drives (e.g. transformers'
    `is_gradient_checkpointing` when peft wraps a model) are hidden for the duration; the caller's own warnings
    and the filters outside the block are kept."""
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY_MODULES)
        yield
