"""The Hugging Face hub, reachable or not: one quick probe instead of a minute of retries when it is down."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_reachable(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub's endpoint opens within `timeout_s` (False in offline mode)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout_s).close()
    except OSError:  # no DNS, refused, unreachable, timed out
        return False
    return True
