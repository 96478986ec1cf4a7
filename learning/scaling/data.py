"""Judgment rows → indexed comparisons: who judged, which condition won, which lost.

A row is ``(participant, condition_a, condition_b, chosen)`` with ``chosen`` equal to ``condition_a`` or
``condition_b``, optionally with a fifth element: how many such judgments the row stands for (so that a
database can hand over aggregated rows); participants and conditions are any hashable values.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from learning.scaling.errors import ScalingError

Row = tuple  # (participant, condition_a, condition_b, chosen[, count])


def _ordered(values: Iterable[Hashable]) -> list:
    vals = list(dict.fromkeys(values))
    try:
        return sorted(vals)
    except TypeError:
        return vals


@dataclass(frozen=True)
class Comparisons:
    """Comparisons aggregated per (participant, winner, loser): ``count[k]`` judgments of that kind."""

    conditions: list
    participants: list
    participant: np.ndarray  # index into participants
    winner: np.ndarray  # index into conditions
    loser: np.ndarray
    count: np.ndarray

    @property
    def n(self) -> int:
        return len(self.conditions)

    @property
    def judgments(self) -> int:
        return int(self.count.sum())

    def wins(self, weights: np.ndarray | None = None) -> np.ndarray:
        """``wins[i, j]``: times i beat j, each participant's judgments weighted by ``weights[p]``."""
        w = self.count if weights is None else self.count * weights[self.participant]
        flat = np.bincount(self.winner * self.n + self.loser, weights=w, minlength=self.n * self.n)
        return flat.reshape(self.n, self.n)

    def appearances(self) -> np.ndarray:
        """Judgments in which each condition was shown."""
        a = np.bincount(self.winner, weights=self.count, minlength=self.n)
        return (a + np.bincount(self.loser, weights=self.count, minlength=self.n)).astype(int)


def comparisons(rows: Iterable[Row], conditions: Sequence[Hashable] | None = None) -> Comparisons:
    """Index ``rows``; ``conditions`` (optional) fixes the order and adds conditions never judged."""
    triples: dict[tuple, int] = {}
    for r in rows:
        try:
            p, a, b, chosen, *count = r
            k = int(count[0]) if count else 1
        except (TypeError, ValueError, IndexError) as exc:
            raise ScalingError(f"a judgment row is (participant, condition_a, condition_b, chosen), "
                               f"got {r!r:.80}") from exc
        if a == b:
            raise ScalingError(f"participant {p!r}: condition {a!r} compared with itself")
        if chosen == a:
            key = (p, a, b)
        elif chosen == b:
            key = (p, b, a)
        else:
            raise ScalingError(f"participant {p!r}: chosen {chosen!r} is neither {a!r} nor {b!r}")
        triples[key] = triples.get(key, 0) + k
    judged = [c for _, w, lo in triples for c in (w, lo)]
    conds = list(conditions) if conditions is not None else _ordered(judged)
    cidx = {c: k for k, c in enumerate(conds)}
    missing = sorted(map(str, set(judged) - set(cidx)))
    if missing:
        raise ScalingError(f"judged conditions missing from the condition list: {', '.join(missing[:10])}")
    parts = _ordered(p for p, _, _ in triples)
    pidx = {p: k for k, p in enumerate(parts)}
    keys = list(triples)
    return Comparisons(
        conditions=conds,
        participants=parts,
        participant=np.array([pidx[p] for p, _, _ in keys], dtype=np.int64),
        winner=np.array([cidx[w] for _, w, _ in keys], dtype=np.int64),
        loser=np.array([cidx[lo] for _, _, lo in keys], dtype=np.int64),
        count=np.array([triples[k] for k in keys], dtype=float),
    )
