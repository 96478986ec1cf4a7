"""Active sampling: which comparisons to ask next, from a Gaussian (Laplace) posterior over the scale.

The posterior after the judgments so far is N(μ, Σ): μ the MAP scale, Σ⁻¹ the Hessian of the negative
log posterior (``thurstone.hessian``). For a candidate pair (i, j) let a = e_i − e_j, μ_d = aᵀμ and
v_d = aᵀΣa; one comparison adds I aaᵀ to the precision, I its Fisher information averaged over
d ~ N(μ_d, v_d), i.e. Σ' = Σ − I Σaaᵀ Σ / (1 + I v_d). Three gains:

* ``variance`` (the site's): tr Σ − tr Σ', A-optimal design, aimed at the scale's mean squared error,
  the accuracy the study reports.
* ``kl``: ASAP's criterion (Mikhailiuk et al., ICPR 2020), the expected KL divergence from the current to
  the updated posterior summed over the conditions' marginals; for Gaussian marginals that is
  Σ_k ½ log(v_k / v_k') (mean-0 marginals here: the scale's mean is not measured).
* ``eig``: the joint information gain I(y; q) = H(E[p]) − E[H(p)], p = Φ(d/σ) (BALD, Houlsby et al.
  2011), D-optimal; it favours near-ties whose difference is uncertain.

Why ``variance`` with spanning-tree batches is the site's design (``CRITERION``, ``STRATEGY``): on simulated
crowds (``bench/active_sampling.py``; bench/README.md, "active sampling and JOD scaling") it needed the
fewest judgments for a settled scale; ``eig`` was worse than balanced sampling with the estimated
posterior, though close to ``variance`` when told the true scale. No design can need fewer than about
70 % of balanced sampling's judgments on a 6 JOD scale (the A-optimal allocation at the true scale); on
12 JOD that bound is about 45 %.

Batches: ``greedy`` takes the best pair, adds its information to the posterior as if it were already
answered, and repeats; ``mst`` is ASAP's batch: minimum spanning trees of the pair graph weighted by
1/gain. Pairs handed out but not yet answered (``pending``) enter the posterior the same way, so that
concurrent batches do not all pile onto the same pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.special import ndtr

from learning.scaling import thurstone

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(24)  # E[f(X)], X ~ N(0, 1) ≈ Σ w f(x)
_GH_W = _GH_W / _GH_W.sum()
CRITERIA = ("variance", "eig", "kl")
STRATEGIES = ("greedy", "mst")
CRITERION, STRATEGY = "variance", "mst"  # the site's active mode (webapp/crowd/active.py) and the bench's


def covariance(precision: np.ndarray) -> np.ndarray:
    """Posterior covariance: the inverse of an SPD precision (``thurstone.spd_inverse``, no BLAS threads)."""
    return thurstone.spd_inverse(precision)


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def eig(mu_d: np.ndarray, var_d: np.ndarray) -> np.ndarray:
    """Expected information gain (nats) of comparing pairs whose difference is N(mu_d, var_d)."""
    mu_d, var_d = np.asarray(mu_d, float), np.maximum(np.asarray(var_d, float), 0.0)
    s = thurstone.SIGMA
    marginal = _entropy(ndtr(mu_d / np.sqrt(s * s + var_d)))
    d = mu_d[..., None] + np.sqrt(var_d)[..., None] * _GH_X
    return np.maximum(marginal - (_entropy(ndtr(d / s)) * _GH_W).sum(-1), 0.0)


def fisher_information(mu_d: np.ndarray) -> np.ndarray:
    """Fisher information about q_i − q_j of one comparison at difference ``mu_d``."""
    x = np.asarray(mu_d, float) / thurstone.SIGMA
    p = np.clip(ndtr(x), 1e-12, 1 - 1e-12)
    phi = np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    return phi * phi / (p * (1 - p)) / thurstone.SIGMA**2


def expected_fisher(mu_d: np.ndarray, var_d: np.ndarray) -> np.ndarray:
    """Fisher information averaged over d ~ N(mu_d, var_d)."""
    d = np.asarray(mu_d, float)[..., None] + np.sqrt(np.maximum(var_d, 0.0))[..., None] * _GH_X
    return (fisher_information(d) * _GH_W).sum(-1)


def add_information(precision: np.ndarray, mu: np.ndarray, pairs: np.ndarray,
                    counts: np.ndarray) -> np.ndarray:
    """``precision`` plus the Fisher information of ``counts[k]`` comparisons of ``pairs[k]`` at ``mu``."""
    prec = np.array(precision, dtype=float)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    i, j = pairs[:, 0], pairs[:, 1]
    h = fisher_information(mu[i] - mu[j]) * np.asarray(counts, float)
    np.add.at(prec, (i, i), h)
    np.add.at(prec, (j, j), h)
    np.add.at(prec, (i, j), -h)
    np.add.at(prec, (j, i), -h)
    return prec


def gains(mu: np.ndarray, cov: np.ndarray, pairs: np.ndarray, criterion: str = CRITERION) -> np.ndarray:
    """Gain of one more comparison of each pair under N(mu, cov) (see the module docstring)."""
    i, j = pairs[:, 0], pairs[:, 1]
    var_d = cov[i, i] + cov[j, j] - 2 * cov[i, j]
    if criterion == "eig":
        return eig(mu[i] - mu[j], var_d)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}")
    info = expected_fisher(mu[i] - mu[j], var_d)
    sa = cov[:, i] - cov[:, j]
    if criterion == "kl":
        centred = sa - sa.mean(0)  # gauge-free marginals: the scale's mean is not measured
        v = np.diag(cov) - 2 * cov.mean(1) + cov.mean()
        shrink = info * centred * centred / (1 + info * var_d) / np.maximum(v, 1e-12)[:, None]
        return -0.5 * np.log1p(-np.minimum(shrink, 1 - 1e-12)).sum(0)
    return info * (sa * sa).sum(0) / (1 + info * var_d)


def spanning_batch(n: int, pairs: np.ndarray, gain: np.ndarray, size: int, free: np.ndarray) -> list[int]:
    """ASAP's batch: minimum spanning trees (forests) of the pair graph weighted by 1/gain, one after
    another on the pairs not yet taken, the most informative first within each tree."""
    free = free.copy()
    out: list[int] = []
    while len(out) < size and free.any():
        k = np.flatnonzero(free)
        a, b = np.minimum(pairs[k, 0], pairs[k, 1]), np.maximum(pairs[k, 0], pairs[k, 1])
        order = np.lexsort((-gain[k], b, a))  # one edge per node pair (its best) for the tree
        first = np.ones(len(order), bool)
        first[1:] = (a[order][1:] != a[order][:-1]) | (b[order][1:] != b[order][:-1])
        best = k[order[first]]
        ba, bb = np.minimum(pairs[best, 0], pairs[best, 1]), np.maximum(pairs[best, 0], pairs[best, 1])
        tree = minimum_spanning_tree(coo_matrix((1.0 / np.maximum(gain[best], 1e-300), (ba, bb)),
                                                shape=(n, n))).tocoo()
        lookup = {(int(x), int(y)): int(e) for x, y, e in zip(ba, bb, best)}
        edges = sorted((lookup[(min(x, y), max(x, y))] for x, y in zip(tree.row, tree.col)),
                       key=lambda e: -gain[e])
        take = edges[: size - len(out)]
        out.extend(take)
        free[take] = False
    return out


def choose(mu: np.ndarray, precision: np.ndarray, pairs: np.ndarray, size: int, *,
           pending: np.ndarray | None = None, allowed: Sequence[bool] | np.ndarray | None = None,
           criterion: str = CRITERION, strategy: str = STRATEGY,
           rng: np.random.Generator | None = None) -> list[int]:
    """Indices of ``size`` distinct candidate pairs (rows of ``pairs``, indices into ``mu``) to ask next.

    ``precision``: posterior precision at ``mu``; ``pending[k]``: comparisons of pair k handed out but not
    answered; ``allowed``: mask of pairs that may be chosen (e.g. not yet seen by this participant). Equal
    gains are broken at random (``rng``)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    mu = np.asarray(mu, float)
    rng = rng if rng is not None else np.random.default_rng()
    free = np.ones(len(pairs), bool) if allowed is None else np.array(allowed, bool)
    prec = add_information(precision, mu, pairs, pending) if pending is not None else precision
    cov = covariance(prec)
    jitter = 1 + 1e-6 * rng.random(len(pairs))
    if strategy == "mst":
        return spanning_batch(len(mu), pairs, gains(mu, cov, pairs, criterion) * jitter, size, free)
    if strategy != "greedy":
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}")
    out: list[int] = []
    for _ in range(min(size, int(free.sum()))):
        g = np.where(free, gains(mu, cov, pairs, criterion) * jitter, -np.inf)
        k = int(np.argmax(g))
        out.append(k)
        free[k] = False
        i, j = pairs[k]
        sa = cov[:, i] - cov[:, j]
        info = float(fisher_information(mu[i] - mu[j]))
        cov = cov - np.outer(sa, sa) * info / (1 + info * (sa[i] - sa[j]))
    return out


def next_batch(wins: np.ndarray, pairs: np.ndarray, size: int, *, init: np.ndarray | None = None,
               prior_sd: float = thurstone.PRIOR_SD, **kwargs) -> tuple[list[int], np.ndarray]:
    """Fit the posterior to ``wins[i, j]`` (warm start ``init``) and ``choose`` ``size`` pairs; returns
    the chosen pair indices and the posterior mean (to warm-start the next call)."""
    mu = thurstone.fit(wins, prior_sd, init=init)
    return choose(mu, thurstone.hessian(mu, wins, prior_sd), pairs, size, **kwargs), mu
