"""The vllm_server engine: sampling from a `groupwise serve-rollout` process over HTTP (loopback).

After every update the trainer writes the policy's weights (LoRA merged) to one safetensors file in shared memory
and the server loads them in place; each generate request names the weights version it expects, so a server that
missed a sync answers 409 instead of sampling from stale weights. Under torchrun rank 0 pushes the weights and
every rank samples its own share. docs/vllm.md: how to start the server.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import weakref
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.distributed.tensor import DTensor

from groupwise.config.schema import RolloutConfig
from groupwise.errors import GroupwiseError
from groupwise.rollout.completions import Completions, SamplingParams
from groupwise.rollout.protocol import EngineFailure
from groupwise.rollout.vllm_backend.weights import WEIGHTS_FILE, plain_weights, save_weights
from groupwise.runtime.distributed import is_main, run_on_main

START_HINT = "start one with `groupwise serve-rollout --model MODEL --port PORT` (docs/vllm.md)"


class VLLMServerEngine:
    """A client of one rollout server at `rollout.vllm.url`."""

    def __init__(self, policy: torch.nn.Module, rollout: RolloutConfig) -> None:
        settings = rollout.vllm
        if settings.lora_sync == "adapter":
            raise GroupwiseError("rollout.vllm.lora_sync adapter works with the colocated vllm engine only",
                                 "use rollout.vllm.lora_sync: merged with vllm_server")
        self.url, self.timeout = settings.url.rstrip("/"), settings.sync_timeout_s
        try:
            self.version = self._call("GET", "/health")["version"]
        except EngineFailure as err:
            raise GroupwiseError(f"no rollout server answers at {self.url}: {err.problem}", START_HINT) from err
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.folder = Path(tempfile.mkdtemp(prefix="groupwise-vllm-push-", dir=shm))
        weakref.finalize(self, shutil.rmtree, self.folder, True)
        self.load_weights(policy)

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Completions:
        out = self._call("POST", "/generate", {"prompt_ids": prompt_ids, "params": asdict(params),
                                               "version": self.version})
        return Completions(torch.tensor(out["token_ids"], dtype=torch.long).reshape(len(out["lengths"]), -1),
                           torch.tensor(out["logprobs"]).reshape(len(out["lengths"]), -1),
                           torch.tensor(out["lengths"]), torch.tensor(out["finished"], dtype=torch.bool))

    def load_weights(self, policy: torch.nn.Module) -> None:
        """Rank 0 writes the weights and has the server load them; every rank learns the new version."""
        path = self.folder / WEIGHTS_FILE
        weights = plain_weights(policy, merge_lora=True)
        if not is_main() and isinstance(next(policy.parameters()), DTensor):
            for _ in weights:  # a sharded policy: every rank takes part in gathering each weight
                pass
        if is_main():
            save_weights(weights, path)
        self.version = run_on_main(lambda: self._call("POST", "/load_weights", {"path": str(path)})["version"])

    def _call(self, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + route, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            reason = json.loads(err.read() or b"{}").get("error", err.reason)
            raise EngineFailure(f"the rollout server at {self.url} refused {route}: {reason}",
                                f"check the server's log; {START_HINT}") from err
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise EngineFailure(f"the rollout server at {self.url} did not answer {route} ({reason})",
                                f"restart it and resume the run; {START_HINT}") from err
