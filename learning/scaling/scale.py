"""``scale_pairs``: a JOD scale with bootstrap confidence intervals from pairwise judgment rows."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from learning.scaling import thurstone
from learning.scaling.bootstrap import participant_weights, percentile_interval, refit
from learning.scaling.data import Comparisons, Row, comparisons
from learning.scaling.errors import ScalingError
from learning.scaling.graph import require_connected

MIN_PARTICIPANTS = 2


@dataclass
class Scale:
    """Per-condition JOD (mean 0, or 0 at ``anchor``) with percentile bootstrap intervals at ``level``."""

    conditions: list
    jod: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    judgments_per_condition: np.ndarray
    judgments: int
    participants: int
    level: float
    n_boot: int
    prior_sd: float
    anchor: Hashable | None
    boot: np.ndarray = field(repr=False)  # n_boot × conditions, same gauge as jod

    def index(self, condition: Hashable) -> int:
        try:
            return self.conditions.index(condition)
        except ValueError:
            raise ScalingError(f"unknown condition {condition!r}") from None

    def difference(self, a: Hashable, b: Hashable) -> tuple[float, float, float]:
        """JOD of ``a`` minus JOD of ``b``, with its bootstrap interval (lo, hi)."""
        i, j = self.index(a), self.index(b)
        lo, hi = percentile_interval(self.boot[:, i] - self.boot[:, j], self.level)
        return float(self.jod[i] - self.jod[j]), float(lo), float(hi)

    def preference(self, a: Hashable, b: Hashable) -> tuple[float, float, float]:
        """P(a chosen over b) predicted by the scale, with its bootstrap interval (lo, hi)."""
        d, lo, hi = self.difference(a, b)
        return tuple(float(thurstone.jod_to_prob(v)) for v in (d, lo, hi))

    def rows(self) -> list[dict]:
        """One dict per condition: condition, jod, ci_low, ci_high, judgments."""
        return [
            {"condition": c, "jod": float(self.jod[k]), "ci_low": float(self.ci_low[k]),
             "ci_high": float(self.ci_high[k]), "judgments": int(self.judgments_per_condition[k])}
            for k, c in enumerate(self.conditions)
        ]


def _gauge(q: np.ndarray, anchor_idx: int | None) -> np.ndarray:
    return q - (q[..., [anchor_idx]] if anchor_idx is not None else q.mean(axis=-1, keepdims=True))


def fit_comparisons(comp: Comparisons, *, n_boot: int = 1000, level: float = 0.95, seed: int | None = 0,
                    prior_sd: float = thurstone.PRIOR_SD, anchor: Hashable | None = None) -> Scale:
    """``scale_pairs`` on already indexed comparisons."""
    if comp.judgments == 0:
        raise ScalingError("no judgments: a scale needs judgments from at least "
                           f"{MIN_PARTICIPANTS} participants")
    require_connected(comp)
    if len(comp.participants) < MIN_PARTICIPANTS:
        raise ScalingError(f"judgments from {len(comp.participants)} participant(s): a confidence interval "
                           f"by bootstrap over participants needs at least {MIN_PARTICIPANTS}")
    if n_boot < 20:
        raise ScalingError(f"n_boot={n_boot}: at least 20 bootstrap resamples are needed for an interval")
    a_idx = None
    if anchor is not None:
        a_idx = comp.conditions.index(anchor) if anchor in comp.conditions else None
        if a_idx is None:
            raise ScalingError(f"anchor {anchor!r} is not one of the conditions")
    q = thurstone.fit(comp.wins(), prior_sd)
    boot = _gauge(refit(comp, q, participant_weights(len(comp.participants), n_boot, seed), prior_sd), a_idx)
    lo, hi = percentile_interval(boot, level)
    return Scale(
        conditions=list(comp.conditions), jod=_gauge(q, a_idx), ci_low=lo, ci_high=hi,
        judgments_per_condition=comp.appearances(), judgments=comp.judgments,
        participants=len(comp.participants), level=level, n_boot=n_boot, prior_sd=prior_sd,
        anchor=anchor, boot=boot,
    )


def scale_pairs(rows: Iterable[Row], *, conditions: Sequence[Hashable] | None = None, n_boot: int = 1000,
                level: float = 0.95, seed: int | None = 0, prior_sd: float = thurstone.PRIOR_SD,
                anchor: Hashable | None = None) -> Scale:
    """Thurstone Case V scale in JOD (1 JOD = 75 % preference) with bootstrap intervals over participants.

    ``rows``: ``(participant, condition_a, condition_b, chosen)``, ``chosen`` ∈ {condition_a, condition_b}.
    ``conditions``: optional order (and conditions that must be on the scale). The point estimate is the
    MAP under a weak N(0, prior_sd²) prior (finite for unanimous pairs); the interval is the percentile
    interval of ``n_boot`` refits on participants drawn with replacement (``seed`` makes it repeatable).
    Gauge: mean 0 over the conditions, or 0 at ``anchor``. Raises ``DisconnectedError`` (naming the
    unconnected conditions) or ``ScalingError`` (no judgments, fewer than two participants).
    """
    return fit_comparisons(comparisons(rows, conditions), n_boot=n_boot, level=level, seed=seed,
                           prior_sd=prior_sd, anchor=anchor)


@dataclass(frozen=True)
class Preference:
    """P(a chosen over b) from direct comparisons, with a bootstrap interval over participants."""

    a: Hashable
    b: Hashable
    p: float
    ci_low: float
    ci_high: float
    judgments: int
    participants: int
    level: float


def preference(rows: Iterable[Row], a: Hashable, b: Hashable, *, n_boot: int = 2000, level: float = 0.95,
               seed: int | None = 0) -> Preference:
    """Share of the judgments comparing ``a`` with ``b`` that chose ``a``, and its percentile bootstrap
    interval over the participants who judged that pair (each resample weighs a participant's judgments
    by how often the participant was drawn). Rows of other pairs are ignored."""
    per: dict[Hashable, list[int]] = {}
    for p, x, y, chosen, *count in rows:
        if {x, y} == {a, b}:
            if chosen not in (a, b):
                raise ScalingError(f"participant {p!r}: chosen {chosen!r} is neither {a!r} nor {b!r}")
            k = int(count[0]) if count else 1
            c = per.setdefault(p, [0, 0])
            c[0] += k * (chosen == a)
            c[1] += k
    if len(per) < MIN_PARTICIPANTS:
        raise ScalingError(f"{a!r} vs {b!r}: judged by {len(per)} participant(s); an interval by bootstrap "
                           f"over participants needs at least {MIN_PARTICIPANTS}")
    wins, n = np.array(list(per.values()), dtype=float).T
    w = participant_weights(len(per), n_boot, seed)
    lo, hi = percentile_interval((w @ wins) / (w @ n), level)
    return Preference(a, b, float(wins.sum() / n.sum()), float(lo), float(hi), int(n.sum()), len(per), level)
