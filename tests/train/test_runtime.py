import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, sys, torch
from groupwise.runtime import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else False
x = torch.ones(16 << 20); del x  # 64 MiB, freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
y = torch.ones(16 << 20)  # the same size again
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
    took, faults = out.split()
    return took, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    took, kept = _page_faults("keep")
    _, default = _page_faults("default")
    assert took == "True"
    assert default > 10_000  # 64 MiB in 4 KiB pages, faulted in afresh after the default allocator's munmap
    assert kept < default / 10
