"""Fit nonnegative DPL channel weights and a monotone preference head on cached vectors.

Model: w = softplus(θ) ≥ 0 (one per channel), d_i = m_i @ w, and

    logit P(p1 preferred) = (d0 − d1) + c · (d0 − d1) / (d0 + d1 + ε),   c = softplus(γ) ≥ 0

which increases with d0 and decreases with d1 (monotone) and is antisymmetric in (p0, p1). The loss is
the binary cross-entropy against the judge fractions. Full-batch L-BFGS in rounds, early stopping on the
validation loss (the best round's parameters are kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from learning import twoafc

EPS = 1e-8


@dataclass
class FitResult:
    weights: torch.Tensor  # C_total, nonnegative
    head_c: float
    train_2afc: float
    val_2afc: float
    val_loss: float
    rounds: int
    history: list[tuple[int, float, float]]  # (round, train loss, val loss)


def _logit(m0: torch.Tensor, m1: torch.Tensor, w: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    d0, d1 = m0 @ w, m1 @ w
    diff = d0 - d1
    return diff + c * diff / (d0 + d1 + EPS)


def _inv_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


def fit_weights(m0: torch.Tensor, m1: torch.Tensor, h: torch.Tensor, v0: torch.Tensor, v1: torch.Tensor,
                vh: torch.Tensor, max_rounds: int = 60, iters_per_round: int = 10, patience: int = 5,
                init: torch.Tensor | None = None, log=None) -> FitResult:
    """Fit on (m0, m1, h), early-stop on (v0, v1, vh). Tensors are N×C, N×C, N (float32)."""
    m0, m1, v0, v1 = (t.double() for t in (m0, m1, v0, v1))
    h, vh = h.double(), vh.double()
    C = m0.shape[1]
    base = torch.ones(C, dtype=torch.float64) if init is None else init.double().clamp_min(1e-6)
    spread = float((m0 @ base - m1 @ base).std()) or 1.0
    theta = _inv_softplus(base / spread).clone().requires_grad_(True)  # start: logits of unit spread
    gamma = torch.tensor(-4.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta, gamma], lr=1, max_iter=iters_per_round, history_size=20,
                            line_search_fn="strong_wolfe")

    def train_loss() -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(_logit(m0, m1, F.softplus(theta), F.softplus(gamma)), h)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = train_loss()
        loss.backward()
        return loss

    def val_loss() -> float:
        with torch.no_grad():
            return float(F.binary_cross_entropy_with_logits(
                _logit(v0, v1, F.softplus(theta), F.softplus(gamma)), vh))

    best = (val_loss(), theta.detach().clone(), gamma.detach().clone(), 0)
    history, bad = [], 0
    for r in range(1, max_rounds + 1):
        opt.step(closure)
        with torch.no_grad():
            tl = float(train_loss())
        vl = val_loss()
        history.append((r, tl, vl))
        if log:
            log(f"round {r:3d}  train loss {tl:.5f}  val loss {vl:.5f}")
        if vl < best[0] - 1e-7:
            best, bad = (vl, theta.detach().clone(), gamma.detach().clone(), r), 0
        else:
            bad += 1
            if bad >= patience:
                break
    w = F.softplus(best[1]).float()
    c = float(F.softplus(best[2]))
    tr = twoafc.score((m0.float() @ w).numpy(), (m1.float() @ w).numpy(), h.numpy())
    va = twoafc.score((v0.float() @ w).numpy(), (v1.float() @ w).numpy(), vh.numpy())
    return FitResult(w, c, tr, va, best[0], best[3], history)


def split_weights(flat: torch.Tensor, channels: list[int]) -> list[torch.Tensor]:
    return list(torch.split(flat.detach().float(), channels))


def holdout(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(n * frac)))
    return np.sort(idx[k:]), np.sort(idx[:k])
