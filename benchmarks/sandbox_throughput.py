"""Sandbox throughput: Python test runs per second (workers 2 and 4), Rust crates per second cold and warm.

Run: ``python benchmarks/sandbox_throughput.py [--python-samples 60] [--rust-samples 16]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from groupwise.rewards import resolve_reward
from groupwise.sandbox.box import bwrap_available

PY_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(10, 5) == 15",
            "assert add(0, 0) == 0"]
RS_TESTS = ["assert_eq!(add(1, 2), 3);", "assert_eq!(add(-1, 1), 0);", "assert_eq!(add(10, 5), 15);",
            "assert_eq!(add(0, 0), 0);"]


def python_rate(samples: int, workers: int) -> float:
    """Sandboxed Python test runs per second (per sample: a solution server and a test harness process)."""
    reward = resolve_reward("code_tests", {"language": "python", "workers": workers})
    completions = [f"```python\ndef add(a, b):\n    return a + b + {i} - {i}\n```" for i in range(samples)]
    start = time.monotonic()
    scores = reward([""] * samples, completions, tests=[PY_TESTS] * samples)
    elapsed = time.monotonic() - start
    assert all(s == 1.0 for s in scores), scores
    return samples * len(PY_TESTS) / elapsed


def rust_rate(samples: int, workers: int, target_dir: str, offset: int) -> tuple[float, float]:
    """(crates, test runs) per second: each sample is its own crate built and tested in the sandbox."""
    reward = resolve_reward("code_tests", {"language": "rust", "workers": workers, "target_dir": target_dir})
    completions = [f"```rust\npub fn add(a: i64, b: i64) -> i64 {{\n    a + b + {i} - {i}\n}}\n```"
                   for i in range(offset, offset + samples)]  # distinct code: every crate really recompiles
    start = time.monotonic()
    scores = reward([""] * samples, completions, tests=[RS_TESTS] * samples)
    elapsed = time.monotonic() - start
    assert all(s == 1.0 for s in scores), scores
    return samples / elapsed, samples * len(RS_TESTS) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-samples", type=int, default=60)
    parser.add_argument("--rust-samples", type=int, default=16)
    parser.add_argument("--rust-workers", type=int, default=2)
    args = parser.parse_args()
    print(f"bubblewrap: {'yes' if bwrap_available() else 'no (rlimits-only fallback)'}")
    python_rate(4, 2)  # warm the page cache and the probe
    for workers in (2, 4):
        print(f"python: {python_rate(args.python_samples, workers):6.1f} test runs/s  (workers={workers})")
    with tempfile.TemporaryDirectory(prefix="groupwise-bench-target-") as target:
        for label, offset in (("cold", 0), ("warm", 10_000)):
            crates, tests = rust_rate(args.rust_samples, args.rust_workers, target, offset)
            print(f"rust {label}: {crates:6.2f} crates/s = {tests:6.1f} test runs/s  "
                  f"(workers={args.rust_workers}, {len(RS_TESTS)} tests per crate)")


if __name__ == "__main__":
    main()
