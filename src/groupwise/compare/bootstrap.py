"""Confidence intervals for a mean over seeds x problems, by a bootstrap that resamples both.

S seeds, P problems; `values: [S, P]` holds one number per (seed, problem), e.g. 1.0 where the greedy answer
of the run with that seed was correct on that problem. A per-run number (training minutes) is `[S, 1]`.
"""

from __future__ import annotations

import warnings

import numpy as np

DEFAULT_REPLICATES = 2000


def bootstrap_indices(seeds: int, problems: int, replicates: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row and column draws with replacement, one set per replicate: ([R, S], [R, P])."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, seeds, (replicates, seeds)), rng.integers(0, problems, (replicates, problems))


def two_way_bootstrap_means(values: np.ndarray, replicates: int = DEFAULT_REPLICATES, seed: int = 0
                            ) -> np.ndarray:
    """Means of `values: [S, P]` resampled by seeds (rows) and problems (columns) independently, with
    replacement: the pigeonhole bootstrap for crossed factors (Owen 2007, Ann. Appl. Stat. 1(1)), percentile
    form of Efron & Tibshirani 1993, ch. 13. Returns [R]. NaN entries are left out of each mean."""
    values = np.asarray(values, dtype=float)
    rows, cols = bootstrap_indices(values.shape[0], values.shape[1], replicates, seed)
    picked = values[rows[:, :, None], cols[:, None, :]]  # [R, S, P]
    return _nanmean(picked.reshape(replicates, -1), axis=1)


def _nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """The mean of the finite entries; NaN (no warning) where there is none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap draws (Efron & Tibshirani 1993, eq. 13.5)."""
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return (float("nan"), float("nan"))
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return (float(lo), float(hi))


def mean_with_interval(values: np.ndarray, replicates: int = DEFAULT_REPLICATES, seed: int = 0
                       ) -> dict[str, object]:
    """{"mean", "ci95": [lo, hi], "per_seed"} of `values: [S, P]`; for a paired difference pass
    variant - baseline on the same seeds and problems, so both sides share every resampled index."""
    values = np.asarray(values, dtype=float)
    per_seed, mean = _nanmean(values, axis=1), float(_nanmean(values))
    lo, hi = percentile_interval(two_way_bootstrap_means(values, replicates, seed))
    return {"mean": mean, "ci95": [lo, hi], "per_seed": [float(v) for v in per_seed]}
