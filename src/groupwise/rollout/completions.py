"""What a rollout is: what an engine is asked for (`SamplingParams`), what it returns (`Completions`) and the
batch the trainer reads (`Rollout`), G consecutive rows per prompt: rows p*G .. p*G+G-1 belong to prompt p."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from groupwise.rollout.episodes.log import EpisodeLog

STOP, LENGTH = "stop", "length"  # finish reasons: ended with EOS, or ran into max_new_tokens


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: `group_size` completions of at most `max_new_tokens` per prompt."""

    group_size: int
    max_new_tokens: int
    eos_id: int
    pad_id: int
    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = False
    keys: list[int] | None = None  # one random-stream key per prompt (streams.py); None: torch's generator


@dataclass
class Completions:
    """An engine's answer for N = prompts x G rows."""

    token_ids: Tensor  # [N, C] int64, pad_id after each row's end
    logprobs: Tensor  # [N, C] the sampler's log-prob of each token, under the distribution drawn from; 0 after
    lengths: Tensor  # [N] tokens of each row, its EOS included
    finished: Tensor  # [N] bool: True ended with EOS, False ran into max_new_tokens

    @property
    def finish_reasons(self) -> list[str]:
        return [STOP if done else LENGTH for done in self.finished.tolist()]


@dataclass
class Rollout:
    """One batch of completions, G consecutive rows per prompt. Tensors are [N, P] (prompt) or [N, C]."""

    prompt_ids: Tensor  # [N, P] left-padded
    prompt_mask: Tensor  # [N, P]
    completion_ids: Tensor  # [N, C] right-padded with pad ids
    completion_mask: Tensor  # [N, C] 1 for real tokens (EOS included)
    sampling_logp: Tensor  # [N, C] log-probs under the sampling distribution (after temperature/top-p)
    ended_with_eos: Tensor  # [N] bool; False means truncated at max_new_tokens
    completions: list[str]  # decoded, special tokens skipped (an episode: its last assistant turn)
    group_size: int
    loss_mask: Tensor | None = None  # [N, C] 1 where the loss applies; None: completion_mask (an episode: its
    # assistant tokens, while the environment's are attended but not trained)
    episodes: EpisodeLog | None = None  # multi-turn rollouts: each row's conversation, environment and counts

    @property
    def lengths(self) -> Tensor:
        return self.completion_mask.sum(-1)

    @property
    def trained_mask(self) -> Tensor:
        """[N, C] the tokens the loss, KL, entropy and length normaliser see: the sampled ones."""
        return self.completion_mask if self.loss_mask is None else self.loss_mask


def completion_mask_and_eos(completion: Tensor, eos_id: int) -> tuple[Tensor, Tensor]:
    """Mask up to and including the first EOS; rows without EOS were truncated. completion: [N, C]."""
    is_eos = completion == eos_id
    has_eos = is_eos.any(-1)
    first_eos = torch.where(has_eos, is_eos.int().argmax(-1), completion.shape[1])
    positions = torch.arange(completion.shape[1], device=completion.device)
    return (positions[None] <= first_eos[:, None]).long(), has_eos


def completions_from_tokens(tokens: Tensor, logprobs: Tensor, eos_id: int, pad_id: int) -> Completions:
    """An engine's [N, C] tokens and log-probs, cut after each row's first EOS (pad ids and 0 beyond it)."""
    mask, finished = completion_mask_and_eos(tokens, eos_id)
    tokens = torch.where(mask.bool(), tokens, torch.full_like(tokens, pad_id))
    return Completions(tokens, logprobs * mask, mask.sum(-1), finished)


def left_pad(sequences: list[list[int]], pad_id: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Token id lists as left-padded [U, P] ids and their attention mask (at least one column)."""
    width = max([len(seq) for seq in sequences] + [1])
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids.to(device), mask.to(device)


def pad_columns(t: Tensor, width: int, value: float, left: bool) -> Tensor:
    extra = width - t.shape[1]
    return torch.nn.functional.pad(t, (extra, 0) if left else (0, extra), value=value)


def select_groups(rollout: Rollout, groups: list[int]) -> Rollout:
    """The rollout restricted to the given prompt groups (in that order)."""
    g = rollout.group_size
    rows = torch.tensor([p * g + i for p in groups for i in range(g)], dtype=torch.long)
    return Rollout(rollout.prompt_ids[rows], rollout.prompt_mask[rows], rollout.completion_ids[rows],
                   rollout.completion_mask[rows], rollout.sampling_logp[rows], rollout.ended_with_eos[rows],
                   [rollout.completions[i] for i in rows.tolist()], g,
                   None if rollout.loss_mask is None else rollout.loss_mask[rows],
                   None if rollout.episodes is None else rollout.episodes.select(rows.tolist()))


def concat_rollouts(rollouts: list[Rollout], pad_id: int) -> Rollout:
    """Rollouts of several sampling rounds as one batch, re-padded to common widths."""
    width_p = max(r.prompt_ids.shape[1] for r in rollouts)
    width_c = max(r.completion_ids.shape[1] for r in rollouts)
    return Rollout(
        torch.cat([pad_columns(r.prompt_ids, width_p, pad_id, True) for r in rollouts]),
        torch.cat([pad_columns(r.prompt_mask, width_p, 0, True) for r in rollouts]),
        torch.cat([pad_columns(r.completion_ids, width_c, pad_id, False) for r in rollouts]),
        torch.cat([pad_columns(r.completion_mask, width_c, 0, False) for r in rollouts]),
        torch.cat([pad_columns(r.sampling_logp, width_c, 0.0, False) for r in rollouts]),
        torch.cat([r.ended_with_eos for r in rollouts]),
        [c for r in rollouts for c in r.completions],
        rollouts[0].group_size,
        None if all(r.loss_mask is None for r in rollouts) else torch.cat(
            [pad_columns(r.trained_mask, width_c, 0, False) for r in rollouts]),
        EpisodeLog.concat([r.episodes for r in rollouts]) if all(r.episodes is not None for r in rollouts) else None,
    )
