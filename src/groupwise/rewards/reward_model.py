"""`reward_model`: the score of a Hugging Face sequence-classification model (TRL's `reward_funcs="model-id"`).

The model scores the prompt text followed by the completion, in batches, under no_grad, on the training device
(`device: auto`). With one output label the score is that logit; with several, `label` picks one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from groupwise.errors import GroupwiseError
from groupwise.rewards.registry import register_reward


def _load(model: str, device: str):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from groupwise.models.load import resolve_device

    if model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
        raise GroupwiseError(f"reward model '{model}' does not exist",
                             "give reward_model's params.model as a local model folder or a hub id")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        classifier = AutoModelForSequenceClassification.from_pretrained(model, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise GroupwiseError(f"cannot load reward model '{model}': {str(err).splitlines()[0]}",
                             "point params.model at a sequence-classification model folder (or a reachable hub "
                             "id)") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if classifier.config.pad_token_id is None:
        classifier.config.pad_token_id = tokenizer.pad_token_id
    return classifier.to(resolve_device(device)).eval(), tokenizer


@register_reward("reward_model")
def make_reward_model(model: str, batch_size: int = 16, device: str = "auto", max_length: int = 2048,
                      label: int = 0):
    """Score prompt + completion with a sequence-classification model, `batch_size` texts at a time."""
    if batch_size < 1 or max_length < 1:
        raise GroupwiseError(f"reward_model needs batch_size and max_length >= 1, got {batch_size}, {max_length}",
                             "set params.batch_size / params.max_length to 1 or more")
    classifier, tokenizer = _load(str(model), device)
    if not 0 <= label < classifier.config.num_labels:
        raise GroupwiseError(f"reward model has {classifier.config.num_labels} labels, label={label} is not one",
                             f"set params.label between 0 and {classifier.config.num_labels - 1}")

    def reward_model(prompts: Sequence[Any], completions: Sequence[Any], completion_ids=None,
                     **_: object) -> list[float]:
        import torch

        from groupwise.rewards.extract import completion_text

        texts = [_text(p) + completion_text(c) for p, c in zip(prompts, completions, strict=True)]
        scores: list[float] = []
        device = next(classifier.parameters()).device
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                                  truncation=True, max_length=max_length).to(device)
                scores += classifier(**batch).logits[:, label].float().tolist()
        return scores

    return reward_model


def _text(prompt: Any) -> str:
    """A prompt as text: a string as it is, a message list as its contents one per line."""
    if isinstance(prompt, str):
        return prompt
    return "".join(f"{m.get('content', '')}\n" for m in prompt) if isinstance(prompt, list) else str(prompt)
