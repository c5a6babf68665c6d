"""groupwise: GRPO and its modern variants with rewards a program can verify.

From Python: `groupwise.train(...)`, `groupwise.evaluate(...)`, `groupwise.select(...)`, `groupwise.Config`
(see README's "From Python" and docs/from-trl.md). The CLI runs the same functions.
"""

from typing import TYPE_CHECKING

from groupwise.api import Run, resolve_config, select
from groupwise.config.schema import Config
from groupwise.errors import GroupwiseError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from groupwise.api import evaluate, train
else:
    from groupwise import api as _api
    from groupwise.entry import entry as _entry

    # both names are also subpackages: bind them after importing those, as callables that read as them too
    train = _entry(_api.train, "groupwise.train")
    evaluate = _entry(_api.evaluate, "groupwise.evaluate")

__all__ = ["Config", "GroupwiseError", "Run", "evaluate", "resolve_config", "select", "train", "__version__"]
