"""The hf engine: `group_size` sampled completions per prompt with plain transformers `generate`, batched.

The reference the fast engine is tested against (same tokens under greedy decoding in float32), and the path
for models the fast engine cannot decode. Each sampled row draws from its own counter-based stream.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from groupwise.rollout.completions import Completions, SamplingParams, completions_from_tokens, left_pad
from groupwise.rollout.streams import counter_uniforms, random_prompt_keys, row_keys
from groupwise.rollout.token_draws import sample_categorical


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
        probs = torch.softmax(scores.float(), dim=-1)
        chosen = sample_categorical(probs, counter_uniforms(self.streams.to(scores.device), self.step))
        self.step += 1
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter_(-1, chosen[:, None], 0.0)


class HFEngine:
    """Samples with `model.generate` from the policy's own modules (nothing to refresh), `batch_size` rows at a
    time (None: all at once)."""

    def __init__(self, model: PreTrainedModel, batch_size: int | None = None) -> None:
        self.model, self.batch_size = model, batch_size

    def load_weights(self, policy: torch.nn.Module) -> None:
        """Nothing to copy: generation runs on the policy itself."""

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Completions:
        """`params.group_size` completions per prompt (rows p*G .. p*G+G-1 belong to prompt p)."""
        device = next(self.model.parameters()).device
        expanded = [ids for ids in prompt_ids for _ in range(params.group_size)]
        streams = None
        if not params.greedy:
            keys = random_prompt_keys(len(prompt_ids)) if params.keys is None else params.keys
            streams = torch.tensor(row_keys(keys, params.group_size), dtype=torch.long)
        size = self.batch_size or max(len(expanded), 1)
        parts = [self._generate_batch(expanded[i:i + size], params, device,
                                      None if streams is None else streams[i:i + size])
                 for i in range(0, len(expanded), size)]
        width = max(tokens.shape[1] for tokens, _ in parts)
        tokens = torch.cat([_right(t, width, params.pad_id) for t, _ in parts])
        logp = torch.cat([_right(lp, width, 0.0) for _, lp in parts])
        return completions_from_tokens(tokens, logp, params.eos_id, params.pad_id)

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams, device: torch.device,
                        streams: Tensor | None) -> tuple[Tensor, Tensor]:
        ids, mask = left_pad(prompts, params.pad_id, device)
        recorder = SampledTokenLogprobs()
        # transformers runs custom processors before its own warpers: pass the warpers here, ahead of the
        # recorder, so it records the distribution actually sampled from
        warpers = [] if params.greedy else [TemperatureLogitsWarper(params.temperature)] + (
            [TopPLogitsWarper(params.top_p)] if params.top_p < 1.0 else [])
        draw = [] if streams is None else [StreamSampling(streams)]  # after the recorder: it records the real p
        was_training = self.model.training
        self.model.eval()
        out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=params.max_new_tokens,
                                  logits_processor=LogitsProcessorList([*warpers, recorder, *draw]),
                                  do_sample=not params.greedy, temperature=1.0, top_p=1.0, top_k=0,
                                  pad_token_id=params.pad_id, eos_token_id=params.eos_id)
        self.model.train(was_training)
        completion = out[:, ids.shape[1]:]
        return completion.cpu(), recorder.finish(completion[:, -1]).cpu()


def _right(t: Tensor, width: int, value: float) -> Tensor:
    return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)
