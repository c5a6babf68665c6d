"""Per-token log-probs of given tokens, without materialising the [batch, seq, vocab] float32 logits."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel

from groupwise.models.head_logprobs import token_logprobs


def left_padded_positions(mask: Tensor) -> Tensor:
    """Position ids for left-padded rows: each row's first real token is position 0. mask: [B, T]."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def prefill_prompts(decoder: torch.nn.Module, prompt_ids: Tensor, prompt_mask: Tensor, prompt_of_row: Tensor
                    ) -> tuple[Any, Tensor, Tensor, Tensor]:
    """Run each distinct prompt [U, P] once and fan its KV cache out to its rows (prompt_of_row: [M]).

    Returns the cache, each row's last prompt hidden state [M, H] (it predicts the first completion token),
    the rows' prompt mask [M, P] and the position of each row's next token [M]. Gradients, when enabled,
    reach the prompt through the shared cache.
    """
    out = decoder(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=left_padded_positions(prompt_mask),
                  use_cache=True)
    cache = out.past_key_values
    cache.reorder_cache(prompt_of_row)
    row_mask = prompt_mask[prompt_of_row]
    return cache, out.last_hidden_state[:, -1][prompt_of_row], row_mask, row_mask.long().sum(-1)


def real_token_logprobs(hidden: Tensor, lm_head: torch.nn.Module, targets: Tensor, mask: Tensor, chunk: int,
                        temperature: float) -> tuple[Tensor, Tensor]:
    """`token_logprobs` of the real (mask 1) tokens only; padding gets 0. hidden: [B, C, H] -> ([B, C]) x 2.

    `chunk` rows of [chunk, vocab] logits are alive at a time instead of all rows; backward recomputes them.

    Completions of one batch differ in length, so a quarter or more of the [B, C] grid can be padding: the LM
    head, the largest single product of a small model's step, skips it.
    """
    b, c = targets.shape
    real = mask.reshape(-1).nonzero().squeeze(-1)
    logp, entropy = token_logprobs(hidden.reshape(b * c, -1)[real], lm_head.weight, targets.reshape(-1)[real],
                                   chunk=chunk, temperature=temperature)
    zeros = logp.new_zeros(b * c)
    return zeros.index_put((real,), logp).view(b, c), zeros.index_put((real,), entropy).view(b, c)


def sequence_logprobs(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor, completion_start: int,
                      chunk: int = 1024, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """Log-probs and entropies of the completion tokens (0 at padding). input_ids: [B, P + C] -> ([B, C]) x 2.

    The body runs once to give hidden states; only real completion positions go through the LM head.
    """
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    positions = left_padded_positions(attention_mask)
    hidden = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                  use_cache=False).last_hidden_state
    h = hidden[:, completion_start - 1:-1]  # state at t predicts token t+1
    return real_token_logprobs(h, model.get_output_embeddings(), input_ids[:, completion_start:],
                               attention_mask[:, completion_start:], chunk, temperature)


def naive_sequence_logprobs(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor,
                            completion_start: int, temperature: float = 1.0) -> Tensor:
    """The plain twin of `sequence_logprobs` (full logits), kept for equality tests."""
    positions = left_padded_positions(attention_mask)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                   use_cache=False).logits.float() / temperature
    logp = torch.log_softmax(logits[:, completion_start - 1:-1], dim=-1)
    return logp.gather(-1, input_ids[:, completion_start:, None]).squeeze(-1)


def shared_prompt_logprobs(model: PreTrainedModel, prompt_ids: Tensor, prompt_mask: Tensor, prompt_of_row: Tensor,
                           completion_ids: Tensor, completion_mask: Tensor, chunk: int = 1024,
                           temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """`sequence_logprobs` with each distinct prompt run once and its KV cache fanned out to its completions.

    prompt_ids/prompt_mask: [U, P] distinct prompts (left-padded); prompt_of_row: [M] index into U;
    completion_ids/completion_mask: [M, C]. A GRPO group shares one prompt, so the prompt part of the forward
    (and of its backward) costs 1/G of the plain path. Gradients reach the prompt through the shared cache.
    """
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    cache, first, row_prompt_mask, start = prefill_prompts(body, prompt_ids, prompt_mask, prompt_of_row)
    positions = start[:, None] + torch.arange(completion_ids.shape[1], device=completion_ids.device)[None]
    completion_out = body(input_ids=completion_ids, past_key_values=cache, use_cache=True,
                          attention_mask=torch.cat([row_prompt_mask, completion_mask], dim=1),
                          position_ids=positions)
    h = torch.cat([first[:, None], completion_out.last_hidden_state[:, :-1]], dim=1)
    return real_token_logprobs(h, model.get_output_embeddings(), completion_ids, completion_mask, chunk,
                               temperature)
