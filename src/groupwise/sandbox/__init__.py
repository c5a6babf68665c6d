"""The isolation layer: run a program under limits in a throwaway box (bubblewrap, cgroup, seccomp, rlimits).

It knows nothing of rewards, tools or training: code rewards (`rewards/judges/`) and, later, tools run the
programs a model wrote through `run_sandboxed`, and read how the run ended from its `SandboxResult`
(`ok`, `timed_out`, `limit_hit`, the captured output). docs/sandbox.md has the threat model.
"""

from groupwise.sandbox.box import (
    BOX,
    SandboxLimits,
    Slot,
    acquire_slot,
    bwrap_available,
    check_not_root,
    ensure_isolation,
    root_fallback,
    run_sandboxed,
    runs_as_slot_uid,
    sandbox_limits,
    world_reachable,
)
from groupwise.sandbox.process import SandboxResult

__all__ = ["BOX", "SandboxLimits", "SandboxResult", "Slot", "acquire_slot", "bwrap_available", "check_not_root",
           "ensure_isolation", "root_fallback", "run_sandboxed", "runs_as_slot_uid", "sandbox_limits",
           "world_reachable"]
