"""How many judgments per trial a target agreement needs, estimated from collected 2AFC judgments.

Input: per trial ``(n, b)``, n judgments of which b chose the second image (p1). Each trial's preference
p is unknown; its posterior under the Jeffreys prior is Beta(b + ½, n − b + ½). ``majority_agreement(k)`` is
the expected probability that the majority of k fresh judgments (ties: half) lands on the side the trial's
true p is on, averaged over the posterior and over trials: the reliability of a k-judgment answer.
``pairwise_agreement`` is the unbiased share of judge pairs that agree on a trial (k = 1 consistency).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats

_GRID = (np.arange(2000) + 0.5) / 2000  # midpoints of (0, 1)


def _side_agreement(k: int) -> np.ndarray:
    """A_k(p) on the grid: P(majority of Bin(k, p) on p's side), ties counting half."""
    p = _GRID
    if k % 2:
        upper = stats.binom.sf(k // 2, k, p)  # P(X > k/2)
    else:
        upper = stats.binom.sf(k // 2, k, p) + 0.5 * stats.binom.pmf(k // 2, k, p)
    return np.where(p > 0.5, upper, np.where(p < 0.5, 1 - upper, 0.5))


def majority_agreement(counts: Sequence[tuple[int, int]], ks: Iterable[int]) -> dict[int, float]:
    """``{k: expected agreement of a k-judgment majority with the trial's true preference}`` over trials
    with at least one judgment; empty when there are none."""
    trials = [(int(n), int(b)) for n, b in counts if n > 0]
    if not trials:
        return {}
    posts = []
    for n, b in trials:
        w = stats.beta.pdf(_GRID, b + 0.5, n - b + 0.5)
        posts.append(w / w.sum())
    post = np.stack(posts)  # trials × grid
    return {k: float((post @ _side_agreement(k)).mean()) for k in ks if k >= 1}


def pairwise_agreement(counts: Sequence[tuple[int, int]]) -> float | None:
    """Mean over trials with n ≥ 2 of the share of judge pairs choosing the same image; None if none."""
    vals = [(b * (b - 1) + (n - b) * (n - b - 1)) / (n * (n - 1)) for n, b in counts if n >= 2]
    return float(np.mean(vals)) if vals else None


def judgments_needed(curve: dict[int, float], target: float) -> int | None:
    """The smallest k on ``curve`` reaching ``target``, or None."""
    return next((k for k in sorted(curve) if curve[k] >= target), None)
