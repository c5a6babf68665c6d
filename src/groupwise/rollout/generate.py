"""Rollouts: `group_size` sampled completions per prompt with transformers `generate`, left-padded and batched."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from groupwise.rollout.streams import counter_uniforms, random_prompt_keys, row_keys


@dataclass
class Rollout:
    """One batch of completions, G consecutive rows per prompt. Tensors are [N, P] (prompt) or [N, C]."""

    prompt_ids: Tensor  # [N, P] left-padded
    prompt_mask: Tensor  # [N, P]
    completion_ids: Tensor  # [N, C] right-padded with pad ids
    completion_mask: Tensor  # [N, C] 1 for real tokens (EOS included)
    sampling_logp: Tensor  # [N, C] log-probs under the sampling distribution (after temperature/top-p)
    ended_with_eos: Tensor  # [N] bool; False means truncated at max_new_tokens
    completions: list[str]  # decoded, special tokens skipped
    group_size: int

    @property
    def lengths(self) -> Tensor:
        return self.completion_mask.sum(-1)


class SampledTokenLogprobs(LogitsProcessor):
    """Records log p(token) of each sampled token from the final (warped) scores, one [N, V] step at a time.

    At step t it sees the token chosen at step t-1 as the last input id, so it keeps only [N] per step
    instead of the [N, C, V] scores that `output_scores=True` would hold.
    """

    def __init__(self) -> None:
        self.previous: Tensor | None = None
        self.picked: list[Tensor] = []

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if self.previous is not None:
            self.picked.append(self.previous.gather(-1, input_ids[:, -1:]).squeeze(-1))
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, last_tokens: Tensor) -> Tensor:
        self.picked.append(self.previous.gather(-1, last_tokens[:, None]).squeeze(-1))
        return torch.stack(self.picked, dim=1)


class StreamSampling(LogitsProcessor):
    """Draws each row's token from its own counter-based stream (streams.py) and forces it: the scores it returns
    keep only the chosen token, so `generate`'s own draw picks it whatever the global generator's state."""

    def __init__(self, streams: Tensor) -> None:
        self.streams, self.step = streams, 0  # streams: [N] int64 row keys

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        from groupwise.rollout.engine import sample_categorical

        probs = torch.softmax(scores.float(), dim=-1)
        chosen = sample_categorical(probs, counter_uniforms(self.streams.to(scores.device), self.step))
        self.step += 1
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter_(-1, chosen[:, None], 0.0)


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str], device: torch.device
                   ) -> tuple[Tensor, Tensor]:
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc.input_ids.to(device), enc.attention_mask.to(device)


@torch.no_grad()
def generate_group_rollouts(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], *,
                            group_size: int, max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                            greedy: bool = False, batch_size: int | None = None, keys: list[int] | None = None
                            ) -> Rollout:
    """Sample `group_size` completions for each prompt (rows p*G .. p*G+G-1 belong to prompt p); `keys`: one
    random-stream key per prompt (streams.py; default: drawn from torch's generator)."""
    device = next(model.parameters()).device
    expanded = [p for p in prompts for _ in range(group_size)]
    streams = None
    if not greedy:
        keys = random_prompt_keys(len(prompts)) if keys is None else keys
        streams = torch.tensor(row_keys(keys, group_size), dtype=torch.long)
    batch_size = batch_size or len(expanded)
    parts = [_generate_batch(model, tokenizer, expanded[i:i + batch_size], max_new_tokens, temperature, top_p,
                             greedy, device, None if streams is None else streams[i:i + batch_size])
             for i in range(0, len(expanded), batch_size)]
    return _concat(parts, tokenizer, group_size)


def _generate_batch(model, tokenizer, prompts, max_new_tokens, temperature, top_p, greedy, device, streams):
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts, device)
    recorder = SampledTokenLogprobs()
    # transformers runs custom processors before its own warpers: pass the warpers here, ahead of the recorder,
    # so it records the distribution actually sampled from
    warpers = [] if greedy else [TemperatureLogitsWarper(temperature)] + (
        [TopPLogitsWarper(top_p)] if top_p < 1.0 else [])
    draw = [] if streams is None else [StreamSampling(streams)]  # after the recorder: it records the real p
    was_training = model.training
    model.eval()
    out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=max_new_tokens,
                         logits_processor=LogitsProcessorList([*warpers, recorder, *draw]), do_sample=not greedy,
                         temperature=1.0, top_p=1.0, top_k=0, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    model.train(was_training)
    completion = out[:, prompt_ids.shape[1]:]
    logp = recorder.finish(completion[:, -1])
    return prompt_ids, prompt_mask, completion, logp


def completion_mask_and_eos(completion: Tensor, eos_id: int) -> tuple[Tensor, Tensor]:
    """Mask up to and including the first EOS; rows without EOS were truncated. completion: [N, C]."""
    is_eos = completion == eos_id
    has_eos = is_eos.any(-1)
    first_eos = torch.where(has_eos, is_eos.int().argmax(-1), completion.shape[1])
    positions = torch.arange(completion.shape[1], device=completion.device)
    return (positions[None] <= first_eos[:, None]).long(), has_eos


def _concat(parts, tokenizer, group_size: int) -> Rollout:
    width_p = max(p[0].shape[1] for p in parts)
    width_c = max(p[2].shape[1] for p in parts)
    pad = tokenizer.pad_token_id

    def left(t: Tensor, width: int, value: float) -> Tensor:
        return torch.nn.functional.pad(t, (width - t.shape[1], 0), value=value)

    def right(t: Tensor, width: int, value: float) -> Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    prompt_ids = torch.cat([left(p[0], width_p, pad) for p in parts])
    prompt_mask = torch.cat([left(p[1], width_p, 0) for p in parts])
    completion = torch.cat([right(p[2], width_c, pad) for p in parts])
    logp = torch.cat([right(p[3], width_c, 0.0) for p in parts])
    mask, has_eos = completion_mask_and_eos(completion, tokenizer.eos_token_id)
    completion = torch.where(mask.bool(), completion, torch.full_like(completion, pad))
    texts = tokenizer.batch_decode(completion, skip_special_tokens=True)
    return Rollout(prompt_ids, prompt_mask, completion, mask, logp * mask, has_eos, texts, group_size)


def select_groups(rollout: Rollout, groups: list[int]) -> Rollout:
    """The rollout restricted to the given prompt groups (in that order)."""
    g = rollout.group_size
    rows = torch.tensor([p * g + i for p in groups for i in range(g)], dtype=torch.long)
    return Rollout(rollout.prompt_ids[rows], rollout.prompt_mask[rows], rollout.completion_ids[rows],
                   rollout.completion_mask[rows], rollout.sampling_logp[rows], rollout.ended_with_eos[rows],
                   [rollout.completions[i] for i in rows.tolist()], g)


def concat_rollouts(rollouts: list[Rollout], pad_id: int) -> Rollout:
    """Rollouts of several sampling rounds as one batch, re-padded to common widths."""
    width_p = max(r.prompt_ids.shape[1] for r in rollouts)
    width_c = max(r.completion_ids.shape[1] for r in rollouts)

    def pad(t: Tensor, width: int, value: float, left: bool) -> Tensor:
        extra = width - t.shape[1]
        return torch.nn.functional.pad(t, (extra, 0) if left else (0, extra), value=value)

    return Rollout(
        torch.cat([pad(r.prompt_ids, width_p, pad_id, True) for r in rollouts]),
        torch.cat([pad(r.prompt_mask, width_p, 0, True) for r in rollouts]),
        torch.cat([pad(r.completion_ids, width_c, pad_id, False) for r in rollouts]),
        torch.cat([pad(r.completion_mask, width_c, 0, False) for r in rollouts]),
        torch.cat([pad(r.sampling_logp, width_c, 0.0, False) for r in rollouts]),
        torch.cat([r.ended_with_eos for r in rollouts]),
        [c for r in rollouts for c in r.completions],
        rollouts[0].group_size,
    )
