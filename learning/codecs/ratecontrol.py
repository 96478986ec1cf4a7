"""Rate targeting: the encoding whose real bpp is closest to a target.

Bits per pixel grow monotonically with a codec's quality parameter, so the target is bracketed by the
two ends of the quality range and then found by regula falsi (Illinois variant) on log(bpp); integer
quality settings stop when the bracket is two adjacent integers. Every encode is cached and the closest
achieved bpp (relative error) is returned with the number of encodes it took.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from learning.codecs.base import Codec, Encoded
from learning.errors import LearningError


@dataclass(frozen=True)
class RateResult:
    encoded: Encoded
    n_encodes: int
    target_bpp: float

    @property
    def relative_error(self) -> float:
        return abs(self.encoded.bpp - self.target_bpp) / self.target_bpp


def encode_at_bpp(
    codec: Codec,
    image: Image.Image,
    target_bpp: float,
    tolerance: float = 0.01,
    max_encodes: int = 16,
    cache: dict | None = None,
) -> RateResult:
    """Encode ``image`` with ``codec`` as close as possible to ``target_bpp`` (real bytes).

    Stops as soon as the achieved bpp is within ``tolerance`` (relative), when the quality grid allows
    no finer step, or after ``max_encodes``. A target below the codec's lowest or above its highest
    achievable rate (beyond the tolerance) is a :class:`LearningError`. Pass the same ``cache`` dict
    for several targets on one image and codec to reuse encodes (``n_encodes`` counts new ones only).
    """
    if not target_bpp > 0 or not math.isfinite(target_bpp):
        raise LearningError(f"bpp target must be a positive number, got {target_bpp}")
    lo_q, hi_q = codec.quality_range
    if lo_q == hi_q:
        raise LearningError(f"{codec.name} has no quality setting; it cannot target a bpp")
    image = image.convert("RGB")
    shared = cache if cache is not None else {}
    cache = {}  # the encodes this target consulted
    new = 0

    def enc(q: float) -> Encoded:
        nonlocal new
        q = float(round(q)) if codec.integer_quality else float(q)
        if q not in shared:
            shared[q] = codec.encode(image, q)
            new += 1
        cache[q] = shared[q]
        return cache[q]

    def err(e: Encoded) -> float:
        return abs(e.bpp - target_bpp) / target_bpp

    def result() -> RateResult:
        best = min(cache.values(), key=err)
        return RateResult(best, new, target_bpp)

    lo, hi = enc(lo_q), enc(hi_q)
    if target_bpp < lo.bpp * (1 - tolerance):
        raise LearningError(
            f"{codec.name}: {target_bpp:g} bpp is below the lowest achievable rate "
            f"({lo.bpp:.4f} bpp at quality {lo_q:g}) for this image"
        )
    if target_bpp > hi.bpp * (1 + tolerance):
        raise LearningError(
            f"{codec.name}: {target_bpp:g} bpp is above the highest achievable rate "
            f"({hi.bpp:.4f} bpp at quality {hi_q:g}) for this image"
        )
    log_t = math.log(target_bpp)
    a, b = float(lo_q), float(hi_q)
    ga, gb = math.log(lo.bpp) - log_t, math.log(hi.bpp) - log_t
    side = 0
    while len(cache) < max_encodes:
        if min(err(e) for e in cache.values()) <= tolerance:
            break
        if codec.integer_quality and b - a <= 1:
            break
        if gb == ga:
            q = (a + b) / 2
        else:
            q = b - gb * (b - a) / (gb - ga)
        if codec.integer_quality:
            q = float(round(q))
            q = min(max(q, a + 1), b - 1)
        elif not a < q < b:
            q = (a + b) / 2
        if q in cache:  # no new point from interpolation: bisect instead
            q = float(round((a + b) / 2)) if codec.integer_quality else (a + b) / 2
            if q in cache:
                break
        gq = math.log(enc(q).bpp) - log_t
        if gq < 0:
            a, ga = q, gq
            if side == -1:
                gb /= 2  # Illinois: halve the stale end so the bracket keeps shrinking from both sides
            side = -1
        else:
            b, gb = q, gq
            if side == 1:
                ga /= 2
            side = 1
    return result()
