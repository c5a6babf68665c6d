"""What a Python caller (`groupwise.train`) hands the training loop in place of what the config names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from groupwise.rewards.compute import RewardFunction

StepCallback = Callable[[int, dict[str, Any]], Any]


@dataclass
class TrainInputs:
    """Objects instead of names; None: the config's own. `trained_model` is filled in by the loop."""

    rewards: list[RewardFunction] | None = None
    model: Any = None  # a loaded transformers causal LM, already on the configured device
    tokenizer: Any = None
    on_step: StepCallback | None = None  # on_step(step, metrics); returning False stops after that step
    trained_model: Any = None  # the policy after training (with its LoRA adapter, if any)

    def stop_after(self, step: int, metrics: dict[str, Any]) -> bool:
        """Call `on_step`; True when it returned False (a clean stop was asked for)."""
        return self.on_step is not None and self.on_step(step, dict(metrics)) is False
