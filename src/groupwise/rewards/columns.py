"""What a reward function reads from a data row: the columns it needs, and the gold it compares against.

A built-in declares them as attributes of the function it returns (`required_columns`, `reads_gold`); a user
function (TRL's signature) needs the column parameters it takes without a default, as TRL passes every column
by name. Both are checked against the data before a run starts, so a missing column is one error line there,
not a TypeError on sample 0 of step 1.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from groupwise.errors import GroupwiseError

STANDARD_ARGUMENTS = frozenset({"prompts", "completions", "completion_ids", "trainer_state", "environments"})
Row = dict[str, Any]


def required_columns(fn: Callable[..., Any]) -> list[str]:
    """The data columns `fn` cannot score without: its declared `required_columns`, else the parameters of its
    signature (other than TRL's standard ones) that have no default."""
    declared = getattr(fn, "required_columns", None)
    if declared is not None:
        return list(declared)
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: nothing to read
        return []
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in parameters if p.kind in named and p.default is inspect.Parameter.empty
            and p.name not in STANDARD_ARGUMENTS]


def check_reward_columns(functions: Sequence[Any], rows: list[Row], what: str = "training data") -> None:
    """Every column a reward needs is in the data (in some row); else one error naming the reward, the column,
    the data's columns and the `data.columns` fix."""
    present = {key for row in rows for key in row}
    for function in functions:
        for column in required_columns(function.fn):
            if column not in present:
                article = "an" if column[:1].lower() in "aeiou" else "a"
                raise GroupwiseError(
                    f"reward '{function.name}' needs {article} '{column}' column, which the {what} does not have "
                    f"(its columns: {', '.join(sorted(map(str, present)))})",
                    f"map one with data.columns (e.g. {{{column}: YOUR_COLUMN}}), or set rewards.functions to "
                    "rewards that fit the data")


def golds_of(functions: Sequence[Any], row: Row) -> dict[str, Any]:
    """The gold each reward compares against for `row`, as it reads it (e.g. {'answer_match': '42'} from
    '... #### 42'); rewards that read none are left out."""
    golds = {}
    for function in functions:
        reader = getattr(function.fn, "reads_gold", None)
        if reader is not None:
            golds[function.name] = reader(row)
    return golds
