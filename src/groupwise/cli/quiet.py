"""Quiet by default: other libraries' warnings, info logs and load bars only with --verbose; ours always."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from groupwise.runtime.quiet import THIRD_PARTY_MODULES

# loggers of the libraries groupwise drives; its own (groupwise.*) keep warning, e.g. the sandbox fallback
THIRD_PARTY_LOGGERS = ("math_verify", "latex2sympy2_extended", "transformers", "peft", "datasets",
                       "huggingface_hub", "accelerate", "torch", "vllm", "torchao")
VERBOSE_HELP = "Show other libraries' warnings, logs and load bars (hidden by default)."


def quiet_third_party(verbose: bool = False) -> None:
    """Unless `verbose`: silence third-party warnings (FutureWarning, DeprecationWarning, library UserWarnings),
    their loggers below ERROR, and the hub's and transformers' progress bars ("Loading weights")."""
    if verbose:
        return
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", module=THIRD_PARTY_MODULES)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")  # read when huggingface_hub loads: its retry lines too
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # read when vllm is imported (rollout.engine vllm)
    if "transformers" in sys.modules or "huggingface_hub" in sys.modules:
        _disable_library_bars()


def _disable_library_bars() -> None:
    """Libraries imported before this call read the environment already: tell them directly."""
    from huggingface_hub.utils import disable_progress_bars
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as transformers_logging

    disable_progress_bars()
    hub_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
