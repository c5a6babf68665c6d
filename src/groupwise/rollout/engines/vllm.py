"""The vllm engine: vLLM in the training process (colocated), refreshed from the policy after every update.

Full fine-tuning and `lora_sync: merged` send every weight (LoRA merged in float32) and vLLM replaces its own
in place; `lora_sync: adapter` sends the adapter alone, which vLLM applies per token. The log-probs it returns
are those of the distribution it drew from (temperature, top-p), so `sampler_gap_*` and TIS/MIS work as with the
fast engine. One vLLM engine serves a process: a second VLLMEngine (evaluation, a later run) reuses it.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from groupwise.config.schema import RolloutConfig
from groupwise.rollout.completions import Completions, SamplingParams
from groupwise.rollout.protocol import EngineFailure
from groupwise.rollout.vllm_backend.local import LocalLLM, first_line
from groupwise.rollout.vllm_backend.weights import base_model, checkpoint_folder, lora_rank, plain_weights

_ENGINES: dict[str, LocalLLM] = {}  # one vLLM engine per model shape and settings in this process
_ADAPTER_IDS = itertools.count(1)


class VLLMEngine:
    """Samples with vLLM from a copy of the policy that `load_weights` refreshes."""

    def __init__(self, policy: torch.nn.Module, rollout: RolloutConfig) -> None:
        self.settings = rollout.vllm
        self.rank = lora_rank(policy) if self.settings.lora_sync == "adapter" else None
        self.lora: Any = None  # the LoRARequest of the current adapter (adapter mode)
        self.folder = Path(tempfile.mkdtemp(prefix="groupwise-vllm-"))
        weakref.finalize(self, shutil.rmtree, self.folder, True)
        first = next(policy.parameters())
        dtype = str(first.dtype).removeprefix("torch.") if self.settings.dtype == "auto" else self.settings.dtype
        shape = {k: v for k, v in base_model(policy).config.to_dict().items() if k != "_name_or_path"}
        key = repr((sorted(shape.items()), self.settings.model_dump(), dtype, self.rank))
        if key not in _ENGINES:
            checkpoint = checkpoint_folder(policy, self.folder / "base", merge_lora=self.rank is None)
            _ENGINES[key] = LocalLLM(checkpoint, self.settings, dtype=dtype, lora_rank=self.rank,
                                     on_cpu=first.device.type == "cpu")
        self.llm = _ENGINES[key]
        if self.rank is not None:  # the frozen base once (the folder's, or an earlier policy's, may differ)
            within_timeout(lambda: self.llm.reload(plain_weights(policy, merge_lora=False)),
                           self.settings.sync_timeout_s)
        self.load_weights(policy)

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Completions:
        return self.llm.generate(prompt_ids, params, lora=self.lora)

    def load_weights(self, policy: torch.nn.Module) -> None:
        """The policy's current weights (or, in adapter mode, its adapter) into vLLM, within sync_timeout_s."""
        if self.rank is None:
            within_timeout(lambda: self.llm.reload(plain_weights(policy, merge_lora=True)),
                           self.settings.sync_timeout_s)
        else:
            self.lora = within_timeout(lambda: self._adapter_request(policy), self.settings.sync_timeout_s)

    def _adapter_request(self, policy: torch.nn.Module) -> Any:
        """The adapter saved to a fresh folder, under a new id (vLLM caches an adapter by its id)."""
        from vllm.lora.request import LoRARequest

        number = next(_ADAPTER_IDS)
        folder = self.folder / f"adapter-{number}"
        policy.save_pretrained(folder)
        if self.lora is not None:
            shutil.rmtree(self.lora.lora_path, ignore_errors=True)
        return LoRARequest(f"policy-{number}", number, str(folder))


def within_timeout(work: Callable[[], Any], timeout_s: float) -> Any:
    """`work()`, or an EngineFailure when it raises or has not finished after `timeout_s` seconds."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as err:  # noqa: BLE001 - handed to the caller below
            box["error"] = err

    worker = threading.Thread(target=run, name="groupwise-weight-sync", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise EngineFailure(f"the weight sync to vLLM did not finish within {timeout_s:g}s",
                            "raise rollout.vllm.sync_timeout_s, or check the machine's memory and load")
    if "error" in box:
        raise EngineFailure(f"the weight sync to vLLM failed: {first_line(box['error'])}",
                            "see docs/vllm.md; resume from the checkpoint once fixed") from box["error"]
    return box.get("value")
