"""How much MSE to add to a fitted DPL before a codec trains on it, chosen from judgments alone.

A codec trained on a DPL alone finds the errors the DPL does not see (colour shifts, low frequencies); a
term ``μ·MSE`` beside it (``--loss dpl:FILE+μ*mse``) keeps them in check. μ is a choice about the observers,
so it is made from their judgments: for each candidate μ the distance ``DPL + μ·MSE`` is scored by 2AFC
agreement on held-out triplets (not those the DPL was fitted on), and the largest μ the judgments cannot tell
from the best is taken: its score is below the best's by less than ``z`` standard errors of the paired
per-triplet difference (the candidates are scored on the same triplets, so that error is far smaller than
either score's own). ``z`` is a one-sided 95 % bound with Bonferroni over the k − 1 comparisons with the best
(multiple comparisons with the best; 2.24 for the five candidates): the best is itself the largest of k noisy
scores, so a margin of one standard error (an earlier rule) sent μ between the grid's ends from run to run on
the same kind of study (r = 0.1 and r = 1 in two runs of the closed loop, bench/README.md "Session 13").

Why the largest: the judgments come from stimuli that no codec optimised against the DPL made, so they
cannot show the DPL's blind spots, which such a codec seeks out. Among the mixtures the judgments cannot tell
apart, the one that leans least on the DPL alone is the safe one. The candidates stop at equal spreads
(``RELATIVE_GRID``'s 1.0): beyond it MSE would dominate and the loss would no longer be the fitted DPL's.
μ = 0 is always a candidate, and is taken when adding MSE makes the agreement worse.

μ is in the units of the training loss (the DPL's mean distance and ``255²·MSE``, as in
``learning.training.losses``), so the chosen value goes into ``--loss`` as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from learning import twoafc
from learning.errors import LearningError

# Candidate weights of the MSE term relative to the DPL, as multiples of the ratio of the two distances'
# spreads over the triplets (1 = both terms move the sum equally).
RELATIVE_GRID = (0.0, 0.03, 0.1, 0.3, 1.0)
CONFIDENCE = 0.95  # a candidate is told apart from the best at this level, over all comparisons with it


@dataclass(frozen=True)
class MixChoice:
    """The chosen ``mu`` and, per candidate, its held-out 2AFC ``score`` and standard error."""

    mu: float
    candidates: tuple[tuple[float, float, float], ...]  # (mu, score, standard error of best − this)
    scale: float  # spread of the DPL distances / spread of the MSE distances

    def loss_spec(self, dpl_file: str) -> str:
        """The ``--loss`` spec of ``train-codec`` for this choice."""
        return f"dpl:{dpl_file}" if self.mu == 0 else f"dpl:{dpl_file}+{self.mu:.6g}*mse"

    def as_dict(self) -> dict:
        return {"mu": self.mu, "scale": self.scale,
                "candidates": [{"mu": m, "score": s, "se": e} for m, s, e in self.candidates]}


def choose_mse_weight(dpl: np.ndarray, mse: np.ndarray, h: np.ndarray,
                      relative: tuple[float, ...] = RELATIVE_GRID) -> MixChoice:
    """μ for ``DPL + μ·MSE`` from held-out triplets.

    ``dpl`` and ``mse`` are N×2 distances (reference to each of the two distorted images) of the fitted DPL
    and of ``255²·MSE``; ``h`` the fraction of judges who chose the second image. LearningError when the
    shapes disagree, there are no triplets, or a distance is not finite.
    """
    dpl, mse, h = (np.asarray(a, dtype=np.float64) for a in (dpl, mse, h))
    if dpl.ndim != 2 or dpl.shape[1] != 2 or mse.shape != dpl.shape or h.shape != (len(dpl),):
        raise LearningError(f"distances must be N×2 and the preferences N (got {dpl.shape}, {mse.shape}, "
                            f"{h.shape})")
    if len(dpl) == 0:
        raise LearningError("no held-out triplets to choose the MSE weight from")
    if not (np.isfinite(dpl).all() and np.isfinite(mse).all() and np.isfinite(h).all()):
        raise LearningError("a distance or preference is not finite")
    if 0.0 not in relative or any(r < 0 for r in relative):
        raise LearningError("the candidates must be ≥ 0 and include 0")
    spread = float(mse.std())
    scale = float(dpl.std()) / spread if spread > 0 else 0.0
    mus = [r * scale for r in sorted(set(relative))] if scale > 0 else [0.0]  # constant MSE changes nothing
    per = [twoafc.per_triplet(*(dpl + mu * mse).T, h) for mu in mus]
    best = int(np.argmax([p.mean() for p in per]))
    rows = []
    for mu, p in zip(mus, per):
        diff = per[best] - p
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        rows.append((mu, float(p.mean()), se))
    z = NormalDist().inv_cdf(1 - (1 - CONFIDENCE) / max(len(rows) - 1, 1))
    chosen = [row for row in rows if per[best].mean() - row[1] <= z * row[2]][-1]
    return MixChoice(mu=chosen[0], candidates=tuple(rows), scale=scale)
