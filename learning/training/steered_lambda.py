"""``--target-bpp``: λ steered during training so the rate meets a target, for comparisons at equal rate.

Comparing two losses (MSE vs a DPL) at the same bitrate needs a λ per loss that lands on the same rate,
and a DPL's λ is on another scale than MSE's (hundreds of times larger). Instead of a λ sweep, the loop
adjusts λ after every step by a multiplicative integral controller on the training batch's estimated
rate::

    log λ ← log λ − GAIN · (log bpp_batch − log target)

so λ falls while the rate is above the target and rises while it is below; ``--lmbda`` is the starting
point. With GAIN = 0.03 a batch-to-batch spread of ±30 % in bpp moves λ by about ±4 % at equilibrium,
and a factor of 2 in λ is corrected within roughly 100 steps. λ is kept within [START/1000, START·1000]
so a run that cannot reach the target (e.g. 0 bpp) says so in its log instead of diverging. Under DDP the
batch rate is averaged over processes first, so every process holds the same λ.
"""

from __future__ import annotations

import math

from learning.errors import LearningError

GAIN = 0.03
SPAN = 1000.0


def check(target: float | None) -> None:
    if target is not None and not (math.isfinite(target) and target > 0):
        raise LearningError(f"--target-bpp {target!r}: must be a positive number of bits per pixel")


class Lambda:
    """The λ of the loss: constant, or steered towards ``target`` bpp (see the module docstring)."""

    def __init__(self, start: float, target: float | None = None):
        check(target)
        self.start, self.target, self.value = float(start), target, float(start)

    @property
    def steered(self) -> bool:
        return self.target is not None

    def update(self, bpp: float) -> float:
        """After a step with batch rate ``bpp`` (same on every process): the λ of the next step."""
        if self.target is None or not (math.isfinite(bpp) and bpp > 0):
            return self.value
        log_l = math.log(self.value) - GAIN * (math.log(bpp) - math.log(self.target))
        lo, hi = math.log(self.start / SPAN), math.log(self.start * SPAN)
        self.value = math.exp(min(max(log_l, lo), hi))
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value, "start": self.start, "target": self.target}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint's λ when it steered towards the same target (exact resume)."""
        if state and self.target is not None and state.get("target") == self.target:
            self.value = float(state["value"])
