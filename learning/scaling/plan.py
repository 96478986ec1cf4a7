"""Study planning: how many judgments a target confidence-interval width needs, from a pilot scale.

An interval narrows as 1/√n with the judgments n behind it (the estimate is a smooth function of
averages over participants), so a condition whose pilot interval is w wide after n judgments needs about
n·(w / target)² for an interval ``target`` wide. Scaling the whole pilot design by one factor f (same
pairs, same mix, more participants), the study reaches the target in every condition at
f = max (w / target)² and in half of them at f = median (w / target)². Only a guide: a pilot with few
participants gives noisy widths, and with active sampling the design does not scale uniformly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from learning.scaling.scale import Scale


@dataclass(frozen=True)
class Plan:
    """Judgments for the target width; ``per_condition`` lists (condition, pilot width, judgments needed)."""

    ci_width: float
    pilot_judgments: int
    pilot_participants: int
    judgments_all: int  # every condition's interval at most ci_width wide
    judgments_median: int  # half of the conditions' intervals at most ci_width wide
    participants_all: int
    per_condition: list[tuple]

    def lines(self) -> list[str]:
        return [
            f"pilot: {self.pilot_judgments} judgments from {self.pilot_participants} participants",
            f"for 95 % intervals at most {self.ci_width:g} JOD wide in every condition: about "
            f"{self.judgments_all} judgments in all (~{self.participants_all} participants at the pilot's "
            f"judgments per participant)",
            f"for half of the conditions: about {self.judgments_median} judgments",
        ]


def plan(scale: Scale, ci_width: float) -> Plan:
    """The judgments needed for intervals ``ci_width`` JOD wide, scaled from the pilot ``scale``."""
    if not ci_width > 0:
        raise ValueError("ci_width must be positive")
    width = np.asarray(scale.ci_high) - np.asarray(scale.ci_low)
    keep = np.ones(len(width), bool)
    if scale.anchor is not None:  # the anchor's interval is 0 by definition
        keep[scale.index(scale.anchor)] = False
    factor = (width[keep] / ci_width) ** 2
    per_participant = scale.judgments / scale.participants
    need = np.ceil(np.asarray(scale.judgments_per_condition) * (width / ci_width) ** 2).astype(int)
    total_all = math.ceil(scale.judgments * float(factor.max()))
    return Plan(
        ci_width=ci_width,
        pilot_judgments=scale.judgments,
        pilot_participants=scale.participants,
        judgments_all=total_all,
        judgments_median=math.ceil(scale.judgments * float(np.median(factor))),
        participants_all=math.ceil(total_all / per_participant),
        per_condition=[(c, float(w), int(n)) for c, w, n in zip(scale.conditions, width, need)],
    )
