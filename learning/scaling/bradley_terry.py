"""Bradley–Terry cross-check with ``choix`` (a maintained library), expressed in JOD.

P(i over j) = 1 / (1 + exp(−(θ_i − θ_j))); a 75 % preference is θ_i − θ_j = ln 3, so JOD = θ / ln 3.
Near equal quality the logistic and the probit (Thurstone) curves differ by a few percent, so the two
scales agree closely in the middle and the BT one is somewhat wider at the extremes.
"""

from __future__ import annotations

import math

import choix
import numpy as np


def bt_jod(wins: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    """Bradley–Terry strengths (mean 0) in JOD from ``wins[i, j]`` = times i beat j; ``alpha`` is choix's
    L2 regularisation (keeps unanimous pairs finite)."""
    theta = choix.ilsr_pairwise_dense(np.asarray(wins, dtype=float), alpha=alpha)
    theta = theta - theta.mean()
    return theta / math.log(3.0)
