"""Fit nonnegative DPL channel weights and a monotone preference head on cached vectors.

Model: w = softplus(θ) ≥ 0 (one per channel), d_i = m_i @ w, and

    logit P(p1 preferred) = (d0 − d1) + c · (d0 − d1) / (d0 + d1 + ε),   c = softplus(γ) ≥ 0

which increases with d0 and decreases with d1 (monotone) and is antisymmetric in (p0, p1). The loss is
the binary cross-entropy against the judge fractions, plus ``prior · mean((θ − θ₀)²)`` when a prior
strength is given: a pull towards the starting weights (e.g. LPIPS's), so that channels the judgments do
not constrain keep their prior value instead of drifting to whatever fits the noise.
Full-batch L-BFGS (scipy), the validation loss checked every round of 10 iterations, early stopping on
it (the best round's parameters are kept).

``device``: where the loss and its gradient are evaluated (float64; on MPS, which has no float64, the CPU).
scipy drives the optimiser on the CPU either way, and the results are CPU tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# scipy's L-BFGS rather than torch.optim.LBFGS: constructing any torch optimizer imports torch._dynamo,
# seconds of start-up for a fit that itself takes a fraction of a second
from scipy.optimize import minimize

from learning import twoafc
from learning.device import device_or_cpu

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


def head_logit(d0: torch.Tensor, d1: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """The monotone head: logit of P(p1 preferred) from the distances d0, d1 (c >= 0)."""
    diff = d0 - d1
    return diff + c * diff / (d0 + d1 + EPS)


def _logit(m0: torch.Tensor, m1: torch.Tensor, w: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return head_logit(m0 @ w, m1 @ w, c)


def _inv_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


def fit_weights(m0: torch.Tensor, m1: torch.Tensor, h: torch.Tensor, v0: torch.Tensor, v1: torch.Tensor,
                vh: torch.Tensor, max_rounds: int = 60, iters_per_round: int = 10, patience: int = 5,
                init: torch.Tensor | None = None, log=None,
                device: torch.device | None = None, prior: float = 0.0) -> FitResult:
    """Fit on (m0, m1, h), early-stop on (v0, v1, vh). Tensors are N×C, N×C, N (float32, any device);
    the matrix products run on ``device`` (None: the CPU; MPS: the CPU too, it has no float64), the
    returned weights are on the CPU. ``init``: the starting
    weights (default all ones), rescaled to the judgments' spread; ``prior`` ≥ 0: the strength of the
    pull towards them (0: none, early stopping only)."""
    dev = device_or_cpu(device)
    if dev.type == "mps":  # float64 matrix products are not supported on MPS
        dev = torch.device("cpu")
    f64 = {"device": dev, "dtype": torch.float64}
    N, C = m0.shape
    both = torch.empty(2 * N, C, **f64)  # one matrix: one matvec each way per evaluation
    both[:N], both[N:] = m0, m1
    v0, v1 = v0.to(**f64), v1.to(**f64)
    h, vh = h.to(**f64), vh.to(**f64)
    base = torch.ones(C, **f64) if init is None else init.to(**f64).clamp_min(1e-6)
    spread = float((both[:N] @ base - both[N:] @ base).std()) or 1.0
    x0 = torch.cat([_inv_softplus(base / spread), torch.tensor([-4.0], **f64)]).cpu()  # θ, γ
    theta0 = x0[:C].to(dev)

    def loss(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(_logit(a, b, F.softplus(x[:C]), F.softplus(x[C])), y)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        # loss and its gradient written out (no autograd graph; one matvec each way per evaluation)
        t = torch.from_numpy(x).to(dev)
        w, c = F.softplus(t[:C]), F.softplus(t[C])
        d = both @ w
        d0, d1 = d[:N], d[N:]
        delta, s = d0 - d1, d0 + d1 + EPS
        z = delta + c * delta / s
        value = F.binary_cross_entropy_with_logits(z, h)
        g = (torch.sigmoid(z) - h) / N
        dz = c * delta / (s * s)
        grad_w = both.T @ torch.cat([g * (1 + c / s - dz), g * (-1 - c / s - dz)])
        grad_theta = grad_w * torch.sigmoid(t[:C])
        if prior:
            dev_theta = t[:C] - theta0
            value = value + prior * (dev_theta * dev_theta).mean()
            grad_theta = grad_theta + (2 * prior / C) * dev_theta
        grad = torch.cat([grad_theta, (g * delta / s).sum().view(1) * torch.sigmoid(t[C])])
        return float(value), grad.cpu().numpy()

    def val_loss(x: np.ndarray) -> float:
        return float(loss(torch.from_numpy(x).to(dev), v0, v1, vh))

    best = [val_loss(x0.numpy()), x0.numpy().copy(), 0]
    history: list[tuple[int, float, float]] = []
    state = {"iter": 0, "bad": 0}

    def end_of_round(x: np.ndarray, train: float) -> bool:
        r = len(history) + 1
        vl = val_loss(x)
        history.append((r, train, vl))
        if log:
            log(f"round {r:3d}  train loss {train:.5f}  val loss {vl:.5f}")
        if vl < best[0] - 1e-7:
            best[:] = [vl, x.copy(), r]
            state["bad"] = 0
        else:
            state["bad"] += 1
        return state["bad"] >= patience

    def callback(intermediate_result) -> None:
        state["iter"] += 1
        if state["iter"] % iters_per_round == 0 and end_of_round(intermediate_result.x,
                                                                 float(intermediate_result.fun)):
            raise StopIteration

    threads = torch.get_num_threads()
    # one thread: the matvecs are memory-bound, and the many tiny ops around them ran 2-3x slower with
    # a second (spinning) thread on a busy 2-core machine
    torch.set_num_threads(1)
    try:
        res = minimize(objective, x0.numpy(), jac=True, method="L-BFGS-B", callback=callback,
                       options={"maxiter": max_rounds * iters_per_round, "maxcor": 20, "ftol": 1e-9,
                                "gtol": 1e-7})
    finally:
        torch.set_num_threads(threads)
    if state["iter"] % iters_per_round and state["bad"] < patience and len(history) < max_rounds:
        end_of_round(res.x, float(res.fun))  # converged inside a round
    xb = torch.from_numpy(best[1])
    w = F.softplus(xb[:C]).float()
    c = float(F.softplus(xb[C]))
    tr = twoafc.score((m0.float().cpu() @ w).numpy(), (m1.float().cpu() @ w).numpy(), h.cpu().numpy())
    va = twoafc.score((v0.float().cpu() @ w).numpy(), (v1.float().cpu() @ w).numpy(), vh.cpu().numpy())
    return FitResult(w, c, tr, va, best[0], best[2], history)


def split_weights(flat: torch.Tensor, channels: list[int]) -> list[torch.Tensor]:
    return list(torch.split(flat.detach().float(), channels))


def holdout(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(n * frac)))
    return np.sort(idx[k:]), np.sort(idx[:k])
