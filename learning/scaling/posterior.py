"""The scale's posterior under a hierarchical prior: the interval ``scale_pairs`` reports by default.

Why not a weak prior. After active sampling the MAP under the weak N(0, 10²) prior is stretched (on the
bench its slope against the true scale is 1.07–1.09): the design keeps comparing pairs that look close and
stops comparing pairs whose difference came out too large by chance, so those errors are never corrected.
Bootstrap and posterior intervals are centred on that stretched estimate and missed the truth in 7–17 %
of the conditions (exact posterior marginals, by importance sampling, missed as often as the Laplace
approximation: the approximation was not the cause). A posterior is valid under any design that depends
only on the data seen (the likelihood principle), but its intervals cover at their level, averaged over
conditions, only when the prior describes how the conditions spread; a 10 JOD prior does not.

The prior here is hierarchical: q_i ~ N(0, τ²), τ estimated from the data (empirical Bayes, EM on the
Laplace posterior: τ² = (‖q̂‖² + tr Σ) / (n − 1) until it settles, at most ``thurstone.PRIOR_SD``). The
interval is that posterior's equal-tailed interval, exact up to Monte Carlo error: importance sampling
from a Student t (6 degrees of freedom) around the Laplace approximation, weights = posterior / proposal.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr

from learning.scaling import thurstone

DF = 6  # the proposal's degrees of freedom: heavier tails than the posterior
INFLATE = 1.2  # the proposal's covariance, relative to the Laplace covariance
MIN_SD = 0.05  # τ floor: conditions that all look equal still get an interval


def hierarchical_fit(wins: np.ndarray, max_sd: float = thurstone.PRIOR_SD, tol: float = 1e-4,
                     max_iter: int = 50) -> tuple[np.ndarray, float]:
    """MAP scale and prior sd τ of the hierarchical prior q_i ~ N(0, τ²), τ by EM on the Laplace
    posterior (at most ``max_sd``, at least ``MIN_SD``)."""
    wins = np.asarray(wins, dtype=float)
    n, tau = len(wins), max_sd
    q = thurstone.fit(wins, tau)
    for _ in range(max_iter):
        cov = thurstone.spd_inverse(thurstone.hessian(q, wins, tau))
        new = float(np.clip(np.sqrt((q @ q + np.trace(cov)) / max(n - 1, 1)), MIN_SD, max_sd))
        done = abs(new - tau) < tol
        tau = new
        q = thurstone.fit(wins, tau, init=q)
        if done:
            break
    return q, tau


def _neg_log_posterior(qs: np.ndarray, wins: np.ndarray, prior_sd: float) -> np.ndarray:
    i, j, wij, wji = thurstone._pairs(wins)
    x = (qs[:, i] - qs[:, j]) / thurstone.SIGMA
    return -(wij * log_ndtr(x) + wji * log_ndtr(-x)).sum(1) + (qs * qs).sum(1) / (2 * prior_sd**2)


def _cholesky(a: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor in element-wise numpy (no BLAS threads, see ``thurstone.spd_inverse``)."""
    a = np.array(a, dtype=float)
    n = len(a)
    low = np.zeros_like(a)
    for k in range(n):
        low[k, k] = np.sqrt(a[k, k] - low[k, :k] @ low[k, :k])
        low[k + 1:, k] = (a[k + 1:, k] - low[k + 1:, :k] @ low[k, :k]) / low[k, k]
    return low


def draws(wins: np.ndarray, q: np.ndarray, prior_sd: float, size: int,
          seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """``size`` importance draws of the scale (``size × n``) and their normalised weights: the posterior
    of ``wins`` under the N(0, prior_sd²) prior, proposed from a t around its mode ``q``."""
    wins = np.asarray(wins, dtype=float)
    n = len(q)
    low = _cholesky(INFLATE * thurstone.spd_inverse(thurstone.hessian(q, wins, prior_sd)))
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((size, n))
    g = rng.chisquare(DF, size) / DF
    x = np.asarray(q, dtype=float) + (z / np.sqrt(g)[:, None]) @ low.T
    log_proposal = -(DF + n) / 2 * np.log1p((z * z).sum(1) / g / DF)  # up to a constant
    log_w = -_neg_log_posterior(x, wins, prior_sd) - log_proposal
    w = np.exp(log_w - log_w.max())
    return x, w / w.sum()


def weighted_interval(samples: np.ndarray, weights: np.ndarray | None,
                      level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed interval at ``level`` of weighted ``samples`` (first axis); unweighted if ``weights``
    is None (then the percentile interval)."""
    a = (1 - level) / 2
    if weights is None:
        lo, hi = np.quantile(samples, [a, 1 - a], axis=0)
        return lo, hi
    samples = np.asarray(samples, dtype=float)
    flat = samples.reshape(len(samples), -1)
    order = np.argsort(flat, axis=0)
    cum = np.cumsum(weights[order], axis=0)
    cols = np.arange(flat.shape[1])
    lo = flat[order[np.argmax(cum >= a, axis=0), cols], cols]
    hi = flat[order[np.argmax(cum >= 1 - a, axis=0), cols], cols]
    return lo.reshape(samples.shape[1:]), hi.reshape(samples.shape[1:])


def effective_size(weights: np.ndarray) -> float:
    """Kish's effective sample size of normalised importance weights."""
    return float(1.0 / np.sum(np.asarray(weights) ** 2))
