"""A vLLM engine in this process (colocated with the trainer), driven with token ids only.

vLLM runs with `distributed_executor_backend="external_launcher"`: no worker processes, the model in this
process, so its weights can be replaced in place (`reload_weights`, ~0.1 s for a small model on a CPU) and, under
torchrun, every rank runs its own engine on its share of the prompts. On a CPU the KV cache is capped
(`rollout.vllm.cpu_kv_cache_gb`) and vLLM is told not to pin OpenMP threads, so the trainer keeps its threads.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from groupwise.errors import GroupwiseError
from groupwise.rollout.completions import Completions, SamplingParams
from groupwise.rollout.streams import row_keys
from groupwise.rollout.vllm_backend import import_vllm

SUPPORTED_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's max_lora_rank choices


@contextlib.contextmanager
def launcher_environment() -> Iterator[None]:
    """What the external launcher reads while vLLM starts: torchrun's variables, or for a lone process rank 0 of 1
    on a free port (taken away again after: a subprocess must not inherit a port this process holds)."""
    extra = {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}  # keep the trainer's threads where they are
    if "RANK" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        extra |= {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                  "MASTER_PORT": str(port)}
    added = {key: value for key, value in extra.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def engine_arguments(folder: Path, settings: Any, *, dtype: str, lora_rank: int | None, on_cpu: bool
                     ) -> dict[str, Any]:
    """vllm.LLM's keyword arguments for `rollout.vllm` settings (`settings`: a VLLMConfig)."""
    eager = on_cpu if settings.enforce_eager == "auto" else settings.enforce_eager
    args: dict[str, Any] = dict(
        model=str(folder), dtype=dtype, seed=0, skip_tokenizer_init=True, enforce_eager=eager, use_tqdm_on_load=False,
        distributed_executor_backend="external_launcher", tensor_parallel_size=settings.tensor_parallel_size,
        logprobs_mode="processed_logprobs",  # the log-probs of the distribution drawn from (temperature, top-p)
        max_model_len=settings.max_model_len, enable_sleep_mode=settings.enable_sleep_mode and not on_cpu)
    if on_cpu:
        args["kv_cache_memory_bytes"] = int(settings.cpu_kv_cache_gb * 2**30)
    else:
        args["gpu_memory_utilization"] = settings.gpu_memory_utilization
    if lora_rank is not None:
        rank = next((r for r in SUPPORTED_LORA_RANKS if r >= lora_rank), None)
        if rank is None:
            raise GroupwiseError(f"vLLM serves LoRA ranks up to {SUPPORTED_LORA_RANKS[-1]}, not lora.r={lora_rank}",
                                 "lower lora.r, or use rollout.vllm.lora_sync: merged")
        args |= {"enable_lora": True, "max_lora_rank": rank, "max_loras": 1}
    return args


class LocalLLM:
    """vllm.LLM built from a checkpoint folder; `generate` takes token ids, `reload` replaces the weights."""

    def __init__(self, folder: Path, settings: Any, *, dtype: str, lora_rank: int | None = None,
                 on_cpu: bool = True) -> None:
        vllm = import_vllm()
        self.sleep_mode = settings.enable_sleep_mode and not on_cpu
        self.asleep = False
        set_num_threads = torch.set_num_threads  # vLLM's CPU worker replaces it with a no-op; threads are unpinned
        try:
            with launcher_environment():
                self.llm = vllm.LLM(**engine_arguments(folder, settings, dtype=dtype, lora_rank=lora_rank,
                                                       on_cpu=on_cpu))
            self.generate([[0]], SamplingParams(1, 1, eos_id=0, pad_id=0, greedy=True))  # fails here if it cannot run
        except GroupwiseError:
            raise
        except Exception as err:  # noqa: BLE001 - vLLM's reason, as one line
            attention = "Unsupported CPU attention" in str(err)
            raise GroupwiseError(f"vLLM cannot run this model here: {first_line(err)}",
                                 "use rollout.engine=fast (or hf); vLLM's CPU attention needs a head size of at least "
                                 "32 on AVX2 CPUs (docs/vllm.md)" if attention else
                                 "use rollout.engine=fast (or hf), or see docs/vllm.md") from err
        finally:
            torch.set_num_threads = set_num_threads

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams, lora: Any = None) -> Completions:
        """`params.group_size` completions per prompt, each a request of its own with its row's seed."""
        from vllm import SamplingParams as VLLMParams
        from vllm.inputs import TokensPrompt

        self.wake()
        keys = row_seeds(len(prompt_ids), params)
        requests = [TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids for _ in range(params.group_size)]
        sampling = [VLLMParams(max_tokens=params.max_new_tokens, temperature=0.0 if params.greedy else
                               params.temperature, top_p=1.0 if params.greedy else params.top_p, logprobs=0,
                               seed=key, detokenize=False, stop_token_ids=[params.eos_id])
                    for key in keys]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False, lora_request=lora)
        completions = pack_outputs([out.outputs[0] for out in outputs], params)
        if self.sleep_mode:
            self.llm.sleep(level=1)  # the trainer's update gets the GPU memory back until the next rollout
            self.asleep = True
        return completions

    def wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def reload(self, weights: Iterable[tuple[str, Tensor]]) -> None:
        """Replace the weights in place (checkpoint names; vLLM repacks them into its kernels' layout)."""
        self.wake()
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.reload_weights(weights_iterator=iter(weights))


def row_seeds(prompts: int, params: SamplingParams) -> list[int | None]:
    """One seed per row, p*G + i: the row's stream key (rollout/streams.py), so a completion is the same whatever
    batch it is sampled in; None (vLLM's own) for greedy rows and rows without keys."""
    if params.greedy or params.keys is None:
        return [None] * (prompts * params.group_size)
    return row_keys(params.keys, params.group_size)


def pack_outputs(outputs: list[Any], params: SamplingParams) -> Completions:
    """vLLM's completion outputs as [N, C] tensors: a completion that stopped on EOS keeps it (and its log-prob)."""
    width = max([len(out.token_ids) for out in outputs] + [1])
    tokens = torch.full((len(outputs), width), params.pad_id, dtype=torch.long)
    logprobs = torch.zeros((len(outputs), width))
    for row, out in enumerate(outputs):
        ids = list(out.token_ids)
        tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        logprobs[row, : len(ids)] = torch.tensor([step[token].logprob for step, token in zip(out.logprobs, ids,
                                                                                             strict=True)])
    lengths = torch.tensor([len(out.token_ids) for out in outputs])
    finished = torch.tensor([out.finish_reason == "stop" for out in outputs])
    return Completions(tokens, logprobs, lengths, finished)


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"
