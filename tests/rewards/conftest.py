"""Fixtures shared by the reward tests."""

from __future__ import annotations

import pytest

from groupwise.sandbox import box as sb


@pytest.fixture(params=["bwrap", "rlimits only"])
def isolation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """With bubblewrap, and in the sandbox's fallback without it (rlimits, the slot's uid when root)."""
    if request.param == "bwrap" and not sb.bwrap_available():
        pytest.skip("bubblewrap does not work here")
    if request.param != "bwrap":
        monkeypatch.setattr(sb, "_PROBE", sb._Probe(done=True, ok=False, reason="disabled by the test"))
    return str(request.param)
