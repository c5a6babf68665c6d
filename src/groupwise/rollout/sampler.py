"""One way to sample completions for training and evaluation alike, through the engine the config names."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from groupwise.config.schema import RolloutConfig
from groupwise.rollout.completions import Rollout, SamplingParams, left_pad
from groupwise.rollout.engines import build_engine
from groupwise.rollout.episodes.runner import EnvironmentSpec, run_episodes
from groupwise.rollout.protocol import RolloutEngine


class Sampler:
    """Samples from `model` as `rollout` (the config's section) says; `refresh()` after its weights change. With an
    `environment`, each sample is an episode (rollout/episodes/) started from its row."""

    def __init__(self, model: PreTrainedModel, rollout: RolloutConfig, engine: RolloutEngine | None = None,
                 environment: EnvironmentSpec | None = None) -> None:
        self.model, self.rollout, self.environment = model, rollout, environment
        self.engine = engine if engine is not None else build_engine(model, rollout)

    def refresh(self) -> None:
        self.engine.load_weights(self.model)

    def __call__(self, tokenizer: PreTrainedTokenizerBase, texts: list[str], *, group_size: int,
                 greedy: bool = False, temperature: float | None = None, top_p: float | None = None,
                 keys: list[int] | None = None, rows: list[dict] | None = None) -> Rollout:
        """`group_size` completions per text. `keys`: one random-stream key per text (rollout/streams.py; None
        draws them from torch's generator). `rows`: the texts' data rows, which an environment's episodes start
        from (the texts are then rendered again, with the tools and what reset returned)."""
        r = self.rollout
        settings = {"group_size": group_size, "greedy": greedy, "keys": keys, "max_new_tokens": r.max_new_tokens,
                    "temperature": r.temperature if temperature is None else temperature,
                    "top_p": r.top_p if top_p is None else top_p}
        if self.environment is not None:
            if rows is None or len(rows) != len(texts):
                raise ValueError("a sampler with an environment needs the rows of its texts")
            return run_episodes(self.engine, tokenizer, rows, self.environment, **settings)
        return sample_rollouts(self.engine, tokenizer, texts, **settings)


def sample_rollouts(engine: RolloutEngine, tokenizer: PreTrainedTokenizerBase, texts: list[str], *, group_size: int,
                    max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False,
                    keys: list[int] | None = None) -> Rollout:
    """Tokenize `texts`, sample `group_size` completions of each with `engine`, and decode them."""
    prompt_ids = [tokenizer(text, add_special_tokens=False).input_ids for text in texts]
    params = SamplingParams(group_size, max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id,
                            temperature, top_p, greedy, keys)
    out = engine.generate(prompt_ids, params)
    ids, mask = left_pad(prompt_ids, tokenizer.pad_token_id)
    rows = [p for p in range(len(texts)) for _ in range(group_size)]
    width = out.token_ids.shape[1]
    completion_mask = (torch.arange(width)[None] < out.lengths[:, None]).long()
    return Rollout(ids[rows], mask[rows], out.token_ids, completion_mask, out.logprobs * completion_mask,
                   out.finished, tokenizer.batch_decode(out.token_ids, skip_special_tokens=True), group_size)


def as_sampler(model: PreTrainedModel | Sampler, rollout: RolloutConfig,
               environment: EnvironmentSpec | None = None) -> Sampler:
    """A sampler over `model`, built once per evaluation (the fast engine copies the weights); with an
    `environment` it runs episodes."""
    return model if isinstance(model, Sampler) else Sampler(model, rollout, environment=environment)
