"""What each episode of a rollout was: its conversation, its environment, the environment's reward, its counts."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

Message = dict[str, Any]


@dataclass
class EpisodeLog:
    """One entry per rollout row (G consecutive rows per prompt), in the rollout's row order."""

    prompts: list[str]  # the rendered text each episode started from (what reward functions get as prompts)
    messages: list[list[Message]]  # the whole conversation with roles: system, user, assistant, tool
    first_reply: list[int]  # where the episode's own turns start in `messages` (after the prompt's messages)
    rewards: list[float | None]  # the environment's step rewards summed (None: it gave none)
    turns: list[int]  # assistant turns
    tool_calls: list[int]  # tool calls made, well-formed or not
    tool_errors: list[int]  # tool calls answered with an error: bad JSON, unknown tool, bad arguments, a raise
    failed: list[bool]  # reset or step raised, and rewards.on_error is zero: the episode scores 0
    scored: bool  # step style: the environment's reward is a reward column of its own ("environment")
    environments: list[Any] | None = None  # the live instances, for reward functions (`environments=`)

    def __getstate__(self) -> dict[str, Any]:
        """Live environments stay in the process that ran them (they may hold clients or locks): a log sent to
        another rank for metrics and samples travels without them."""
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"environments": None}

    def select(self, rows: list[int]) -> EpisodeLog:
        picked = {f.name: [getattr(self, f.name)[i] for i in rows] for f in fields(self)
                  if f.name not in ("scored", "environments")}
        environments = None if self.environments is None else [self.environments[i] for i in rows]
        return EpisodeLog(**picked, scored=self.scored, environments=environments)

    @staticmethod
    def concat(logs: list[EpisodeLog]) -> EpisodeLog:
        joined = {f.name: [item for log in logs for item in getattr(log, f.name)] for f in fields(EpisodeLog)
                  if f.name not in ("scored", "environments")}
        environments = (None if any(log.environments is None for log in logs)
                        else [env for log in logs for env in log.environments])
        return EpisodeLog(**joined, scored=logs[0].scored, environments=environments)

    def completion_messages(self) -> list[list[Message]]:
        """Each episode's own turns (assistant and tool/user replies): what TRL hands reward functions as the
        completion of a conversational prompt."""
        return [messages[start:] for messages, start in zip(self.messages, self.first_reply, strict=True)]

    def metrics(self, ended_with_eos: Tensor) -> dict[str, float]:
        """env/turns_mean, env/tool_calls_mean, env/tool_errors (a count), env/truncated_frac, env/failed."""
        n = max(len(self.turns), 1)
        return {"env/turns_mean": sum(self.turns) / n, "env/tool_calls_mean": sum(self.tool_calls) / n,
                "env/tool_errors": float(sum(self.tool_errors)),
                "env/truncated_frac": float((~ended_with_eos).float().mean()) if len(ended_with_eos) else 0.0,
                "env/failed": float(sum(self.failed))}


def environment_rewards(log: EpisodeLog) -> Tensor:
    """[N] each episode's environment reward: its step rewards' sum, 0 for a failed one, NaN where none came."""
    values = [0.0 if failed else (float("nan") if reward is None else reward)
              for reward, failed in zip(log.rewards, log.failed, strict=True)]
    return torch.tensor(values, dtype=torch.float32)
