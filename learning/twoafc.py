"""2AFC scoring: agreement of a metric with human judgments, bootstrap intervals, human ceiling.

Per triplet with human preference h (fraction of judges choosing p1) and metric distances d0, d1:

    score = (d0 < d1)·(1 − h) + (d1 < d0)·h + ½·(d0 == d1)

Human ceiling (where the number of judges n ≥ 2 is known): the probability that two *different* judges
drawn without replacement agree, k = n·h judges chose p1::

    ceiling = (k(k − 1) + (n − k)(n − k − 1)) / (n(n − 1))

This is the unbiased version of the BAPPS figure h² + (1 − h)² (which counts a judge agreeing with
itself and so overstates agreement for small n). It is the expected 2AFC score of one held-out judge
used as the "metric" against the others.
"""

from __future__ import annotations

import numpy as np


def per_triplet(d0: np.ndarray, d1: np.ndarray, h: np.ndarray) -> np.ndarray:
    d0, d1, h = (np.asarray(a, dtype=np.float64) for a in (d0, d1, h))
    return (d0 < d1) * (1 - h) + (d1 < d0) * h + 0.5 * (d0 == d1)


def score(d0: np.ndarray, d1: np.ndarray, h: np.ndarray) -> float:
    """Mean 2AFC score (0.5 = chance, 1 = always agrees with a unanimous majority)."""
    return float(per_triplet(d0, d1, h).mean())


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-triplet ``values`` (resampling triplets)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0 or n_boot <= 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # chunks keep memory flat for big sets
        stop = min(n_boot, start + 256)
        idx = rng.integers(0, len(values), size=(stop - start, len(values)))
        means[start:stop] = values[idx].mean(1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def human_ceiling(h: np.ndarray, n: np.ndarray | None) -> np.ndarray | None:
    """Per-triplet ceiling for triplets with ≥ 2 judges (NaN elsewhere); None when counts are unknown."""
    if n is None:
        return None
    h, n = np.asarray(h, dtype=np.float64), np.asarray(n, dtype=np.float64)
    k = np.round(h * n)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (k * (k - 1) + (n - k) * (n - k - 1)) / (n * (n - 1))
    return np.where(n >= 2, c, np.nan)
