"""Unbiased pass@k from n samples with c correct (Chen et al. 2021, arXiv 2107.03374)."""

from __future__ import annotations

from collections.abc import Sequence

from groupwise.errors import GroupwiseError


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k)/C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i): Chen et al. (arXiv 2107.03374) fig. 3."""
    if not 0 <= c <= n:
        raise GroupwiseError(f"pass@k needs 0 <= c <= n, got n={n}, c={c}", "count correct samples among n")
    if not 1 <= k <= n:
        raise GroupwiseError(f"pass@k needs 1 <= k <= n, got n={n}, k={k}", "sample at least k completions")
    if n - c < k:
        return 1.0
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1.0 - k / i
    return 1.0 - fail


def pass_at_k_many(ns: Sequence[int], cs: Sequence[int], k: int) -> float:
    """Mean pass@k over problems (Chen et al. 2021); 0.0 for no problems."""
    if len(ns) != len(cs):
        raise GroupwiseError(f"{len(ns)} sample counts but {len(cs)} correct counts",
                             "pass one (n, c) pair per problem")
    if not ns:
        return 0.0
    return sum(pass_at_k(int(n), int(c), k) for n, c in zip(ns, cs, strict=True)) / len(ns)
