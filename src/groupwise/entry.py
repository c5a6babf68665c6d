"""`groupwise.train` and `groupwise.evaluate` are both functions and subpackages.

Python binds a subpackage as an attribute of its parent when it is first imported, which would hide the
function of the same name. The package therefore imports both subpackages first and binds these callables in
their place: calling one runs the API function, and any other attribute (`groupwise.train.loop`, ...) comes
from the subpackage, so imports like `import groupwise.train.loop as loop` keep working.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any


class Entry:
    """A function that also reads as the subpackage of the same name."""

    def __init__(self, function: Callable[..., Any], package: str) -> None:
        object.__setattr__(self, "_function", function)
        object.__setattr__(self, "_package", package)
        functools.update_wrapper(self, function)  # type: ignore[arg-type]
        object.__setattr__(self, "__signature__", inspect.signature(function))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self._package), name)

    def __repr__(self) -> str:
        return f"<function {self._package} (also the subpackage)>"


def entry(function: Callable[..., Any], package: str) -> Any:
    """`function`, reachable as the attribute that names `package` (imported here, before it is bound)."""
    importlib.import_module(package)
    return Entry(function, package)
