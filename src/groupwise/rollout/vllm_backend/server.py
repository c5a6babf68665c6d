"""`groupwise serve-rollout`: a vLLM engine in a process of its own, answering a trainer over HTTP on loopback.

    GET  /health        {"ok": true, "version": N}   N: weight loads so far
    POST /generate      {"prompt_ids", "params", "version"} -> {"token_ids", "logprobs", "lengths", "finished"}
    POST /load_weights  {"path": ".../model.safetensors"} -> {"version": N}

A /generate that names a weights version other than the server's is refused (409): a trainer never samples from
stale weights. Requests are served one at a time (vLLM's engine is not shared between threads).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from safetensors import safe_open

from groupwise.config.schema import Config
from groupwise.models.load import load_configured_model
from groupwise.rollout.completions import SamplingParams
from groupwise.rollout.vllm_backend.local import LocalLLM, first_line
from groupwise.rollout.vllm_backend.weights import checkpoint_folder


class RolloutServer(HTTPServer):
    """An HTTP server around one LocalLLM."""

    def __init__(self, llm: LocalLLM, host: str, port: int) -> None:
        super().__init__((host, port), RolloutHandler)
        self.llm, self.version = llm, 0

    def generate(self, body: dict[str, Any]) -> dict[str, Any]:
        names = {f.name for f in fields(SamplingParams)}
        params = SamplingParams(**{k: v for k, v in body["params"].items() if k in names})
        out = self.llm.generate(body["prompt_ids"], params)
        return {"token_ids": out.token_ids.tolist(), "logprobs": out.logprobs.tolist(),
                "lengths": out.lengths.tolist(), "finished": out.finished.tolist()}

    def load_weights(self, body: dict[str, Any]) -> dict[str, Any]:
        with safe_open(body["path"], framework="pt") as weights:
            self.llm.reload((name, weights.get_tensor(name)) for name in weights.keys())  # noqa: SIM118
        self.version += 1
        return {"version": self.version}


class RolloutHandler(BaseHTTPRequestHandler):
    server: RolloutServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/health":
            return self._answer(404, {"error": f"no {self.path}"})
        self._answer(200, {"ok": True, "version": self.server.version})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path == "/generate":
                if body.get("version") != self.server.version:
                    return self._answer(409, {"error": f"the server holds weights version {self.server.version}, "
                                                       f"not {body.get('version')}"})
                return self._answer(200, self.server.generate(body))
            if self.path == "/load_weights":
                return self._answer(200, self.server.load_weights(body))
            self._answer(404, {"error": f"no {self.path}"})
        except Exception as err:  # noqa: BLE001 - the client gets the reason as one line
            self._answer(500, {"error": first_line(err)})

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: one line per request is noise
        return


def serve(cfg: Config, host: str, port: int, announce: Any = print) -> None:
    """Load `cfg.model` as the trainer does, start vLLM on it (`cfg.rollout.vllm`) and answer until stopped."""
    model, _ = load_configured_model(cfg)
    folder = Path(tempfile.mkdtemp(prefix="groupwise-serve-rollout-"))
    try:
        first = next(model.parameters())
        dtype = str(first.dtype).removeprefix("torch.") if cfg.rollout.vllm.dtype == "auto" else cfg.rollout.vllm.dtype
        llm = LocalLLM(checkpoint_folder(model, folder), cfg.rollout.vllm, dtype=dtype,
                       on_cpu=first.device.type == "cpu")
        del model
        server = RolloutServer(llm, host, port)
        announce(f"serving rollouts of {cfg.model.name} at http://{host}:{server.server_port}")
        server.serve_forever()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
