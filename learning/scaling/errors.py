"""Errors of the scaling package: bad input said in one line, never a number without its interval."""

from __future__ import annotations

from learning.errors import LearningError


class ScalingError(LearningError):
    """The judgments cannot give a scale with confidence intervals (the message says why)."""


class DisconnectedError(ScalingError):
    """The comparison graph falls apart: ``groups`` lists the conditions of each connected group."""

    def __init__(self, groups: list[list]):
        self.groups = groups
        main = groups[0]
        rest = [c for g in groups[1:] for c in g]
        shown = ", ".join(map(str, rest[:20])) + (f" and {len(rest) - 20} more" if len(rest) > 20 else "")
        super().__init__(
            f"the comparison graph is not connected ({len(groups)} groups): {len(rest)} condition(s) are "
            f"never compared, directly or through others, with the largest group of {len(main)}: {shown}"
        )
