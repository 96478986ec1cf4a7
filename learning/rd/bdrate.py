"""Bjøntegaard delta rate (VCEG-M33), as in the common implementations (FAU-LMS/bjontegaard, Anserw).

Log-rate is interpolated as a function of quality — by a cubic polynomial fit (the original) or by
piecewise cubic Hermite interpolation (``pchip``, the JCT-VC common-test-conditions variant) — and
integrated over the quality interval both curves cover. The result is the average rate difference of
the test codec against the anchor in percent (negative = fewer bits).
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

from learning.errors import LearningError


def _prepare(rate, quality) -> tuple[np.ndarray, np.ndarray]:
    r, q = np.asarray(rate, float), np.asarray(quality, float)
    if r.shape != q.shape or r.ndim != 1 or len(r) < 2:
        raise LearningError("BD-rate needs at least two (rate, quality) points per curve")
    if np.any(r <= 0) or not np.all(np.isfinite(q)):
        raise LearningError("BD-rate needs positive rates and finite quality values")
    order = np.argsort(q)
    q, lr = q[order], np.log(r[order])
    if np.any(np.diff(q) <= 0):
        raise LearningError("BD-rate needs strictly increasing quality along a curve")
    return lr, q


def bd_rate(rate_anchor, quality_anchor, rate_test, quality_test, method: str = "pchip") -> float:
    """Average bitrate difference (%) of the test curve against the anchor at equal quality."""
    lr1, q1 = _prepare(rate_anchor, quality_anchor)
    lr2, q2 = _prepare(rate_test, quality_test)
    lo, hi = max(q1.min(), q2.min()), min(q1.max(), q2.max())
    if not hi > lo:
        raise LearningError("BD-rate: the two curves do not overlap in quality")
    if method == "cubic":
        if len(q1) < 4 or len(q2) < 4:
            raise LearningError("cubic BD-rate needs at least four points per curve")
        p1, p2 = np.polyint(np.polyfit(q1, lr1, 3)), np.polyint(np.polyfit(q2, lr2, 3))
        int1 = np.polyval(p1, hi) - np.polyval(p1, lo)
        int2 = np.polyval(p2, hi) - np.polyval(p2, lo)
    elif method == "pchip":
        # exact integral of the Hermite pieces (as the JCT-VC Excel sheet and FAU-LMS/bjontegaard)
        int1 = PchipInterpolator(q1, lr1).integrate(lo, hi)
        int2 = PchipInterpolator(q2, lr2).integrate(lo, hi)
    else:
        raise LearningError(f"unknown BD-rate method {method!r}")
    return float((np.exp((int2 - int1) / (hi - lo)) - 1) * 100)
