"""Bootstrap over participants (the unit that is sampled): multinomial resampling weights."""

from __future__ import annotations

import numpy as np


def participant_weights(n_participants: int, n_boot: int, seed: int | None = 0) -> np.ndarray:
    """``n_boot × n_participants`` counts: how often each participant is drawn in each resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_participants, np.full(n_participants, 1.0 / n_participants), size=n_boot)


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of the bootstrap ``samples`` (first axis) at confidence ``level``."""
    a = (1 - level) / 2
    lo, hi = np.quantile(samples, [a, 1 - a], axis=0)
    return lo, hi
