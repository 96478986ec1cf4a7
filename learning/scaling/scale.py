"""``scale_pairs``: a JOD scale with confidence intervals from pairwise judgment rows."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from learning.scaling import posterior, thurstone
from learning.scaling.bootstrap import participant_weights, percentile_interval, refit
from learning.scaling.data import Comparisons, Row, comparisons
from learning.scaling.errors import ScalingError
from learning.scaling.graph import require_connected

MIN_PARTICIPANTS = 2
INTERVALS = ("posterior", "bootstrap")
DRAWS_PER_BOOT = 4  # importance draws per ``n_boot`` for the posterior interval


@dataclass
class Scale:
    """Per-condition JOD (mean 0, or 0 at ``anchor``) with intervals at ``level``: equal-tailed intervals of
    the weighted ``draws`` (posterior: importance draws; bootstrap: refits, equal weights)."""

    conditions: list
    jod: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    judgments_per_condition: np.ndarray
    judgments: int
    participants: int
    level: float
    n_boot: int
    prior_sd: float  # the prior sd used: estimated (hierarchical) unless given
    anchor: Hashable | None
    interval: str
    draws: np.ndarray = field(repr=False)  # draws × conditions, same gauge as jod
    weights: np.ndarray | None = field(repr=False, default=None)  # normalised; None: equal

    def index(self, condition: Hashable) -> int:
        try:
            return self.conditions.index(condition)
        except ValueError:
            raise ScalingError(f"unknown condition {condition!r}") from None

    def difference(self, a: Hashable, b: Hashable) -> tuple[float, float, float]:
        """JOD of ``a`` minus JOD of ``b``, with its interval (lo, hi) from the same draws."""
        i, j = self.index(a), self.index(b)
        lo, hi = posterior.weighted_interval(self.draws[:, i] - self.draws[:, j], self.weights, self.level)
        return float(self.jod[i] - self.jod[j]), float(lo), float(hi)

    def preference(self, a: Hashable, b: Hashable) -> tuple[float, float, float]:
        """P(a chosen over b) predicted by the scale, with its interval (lo, hi)."""
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
                    prior_sd: float | None = None, anchor: Hashable | None = None,
                    interval: str = "posterior") -> Scale:
    """``scale_pairs`` on already indexed comparisons."""
    if interval not in INTERVALS:
        raise ScalingError(f"interval={interval!r}: one of {', '.join(INTERVALS)}")
    if comp.judgments == 0:
        raise ScalingError("no judgments: a scale needs judgments from at least "
                           f"{MIN_PARTICIPANTS} participants")
    require_connected(comp)
    if len(comp.participants) < MIN_PARTICIPANTS:
        raise ScalingError(f"judgments from {len(comp.participants)} participant(s): a confidence interval "
                           f"by bootstrap over participants needs at least {MIN_PARTICIPANTS}")
    if n_boot < 20:
        raise ScalingError(f"n_boot={n_boot}: at least 20 draws are needed for an interval")
    a_idx = None
    if anchor is not None:
        a_idx = comp.conditions.index(anchor) if anchor in comp.conditions else None
        if a_idx is None:
            raise ScalingError(f"anchor {anchor!r} is not one of the conditions")
    wins = comp.wins()
    if prior_sd is None:
        q, prior_sd = posterior.hierarchical_fit(wins)
    else:
        q = thurstone.fit(wins, prior_sd)
    if interval == "posterior":
        x, w = posterior.draws(wins, q, prior_sd, DRAWS_PER_BOOT * n_boot, seed)
    else:
        x, w = refit(comp, q, participant_weights(len(comp.participants), n_boot, seed), prior_sd), None
    x = _gauge(x, a_idx)
    lo, hi = posterior.weighted_interval(x, w, level)
    return Scale(
        conditions=list(comp.conditions), jod=_gauge(q, a_idx), ci_low=lo, ci_high=hi,
        judgments_per_condition=comp.appearances(), judgments=comp.judgments,
        participants=len(comp.participants), level=level, n_boot=n_boot, prior_sd=prior_sd,
        anchor=anchor, interval=interval, draws=x, weights=w,
    )


def scale_pairs(rows: Iterable[Row], *, conditions: Sequence[Hashable] | None = None, n_boot: int = 1000,
                level: float = 0.95, seed: int | None = 0, prior_sd: float | None = None,
                anchor: Hashable | None = None, interval: str = "posterior") -> Scale:
    """Thurstone Case V scale in JOD (1 JOD = 75 % preference) with intervals at ``level``.

    ``rows``: ``(participant, condition_a, condition_b, chosen)``, ``chosen`` ∈ {condition_a, condition_b}.
    ``conditions``: optional order (and conditions that must be on the scale). The point estimate is the
    MAP under the prior N(0, τ²): τ estimated from the data (hierarchical, at most 10 JOD; ``posterior``)
    unless ``prior_sd`` fixes it. ``interval="posterior"``: the equal-tailed posterior interval from
    ``4·n_boot`` importance draws; ``"bootstrap"``: the percentile interval of ``n_boot`` refits on
    participants drawn with replacement (under-covers after active sampling, see ``posterior``). ``seed``
    makes either repeatable. Gauge: mean 0 over the conditions, or 0 at ``anchor``. Raises
    ``DisconnectedError`` (naming the unconnected conditions) or ``ScalingError`` (no judgments, fewer
    than two participants).
    """
    return fit_comparisons(comparisons(rows, conditions), n_boot=n_boot, level=level, seed=seed,
                           prior_sd=prior_sd, anchor=anchor, interval=interval)


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
