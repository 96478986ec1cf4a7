"""Benchmark: encodes per bpp target and achieved error, per codec, on a few Kodak images.

Run: .venv/bin/python bench/rate_targeting.py [--images 4] [--targets 0.25,0.5,1.0]
Baseline in the same run: a plain bisection on the quality parameter (same tolerance, same budget),
so the printed ratio is "encodes with our search / encodes with bisection".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from learning.codecs import get_codec  # noqa: E402
from learning.codecs.ratecontrol import encode_at_bpp  # noqa: E402
from learning.errors import LearningError  # noqa: E402

KODAK = Path("/work/shared/data/kodak")
CODECS = ["jpeg", "jpeg444", "webp", "jpeg2000", "avif", "heic", "jxl"]


def bisection(codec, image, target, tol=0.03, max_encodes=8):
    """Baseline: bisection on quality, closest encode kept; returns (bpp, encodes)."""
    lo, hi = codec.quality_range
    seen = {}

    def enc(q):
        q = round(q) if codec.integer_quality else q
        if q not in seen:
            seen[q] = codec.encode(image, q).bpp
        return seen[q]

    enc(lo), enc(hi)
    a, b = lo, hi
    while len(seen) < max_encodes:
        if min(abs(v - target) / target for v in seen.values()) <= tol:
            break
        if codec.integer_quality and b - a <= 1:
            break
        m = (a + b) / 2
        if enc(m) < target:
            a = round(m) if codec.integer_quality else m
        else:
            b = round(m) if codec.integer_quality else m
    best = min(seen.values(), key=lambda v: abs(v - target))
    return best, len(seen)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--targets", default="0.25,0.5,1.0")
    args = ap.parse_args()
    targets = [float(t) for t in args.targets.split(",")]
    ids = [1, 7, 13, 23, 5, 15][: args.images]
    images = [Image.open(KODAK / f"kodim{i:02d}.png").convert("RGB") for i in ids]
    print(f"{len(images)} Kodak images (768x512) x targets {targets}; tolerance 3 %, max 8 encodes")
    print(
        f"{'codec':9} {'encodes':>7} {'bisect':>7} {'ratio':>6} {'mean err':>9} {'max err':>8} "
        f"{'within3%':>8} {'s/target':>8}"
    )
    lines = []
    for name in CODECS:
        codec = get_codec(name)
        ours, base, errs, within, n, t_total = [], [], [], 0, 0, 0.0
        for img in images:
            for t in targets:
                try:
                    t0 = time.perf_counter()
                    r = encode_at_bpp(codec, img, t)
                    t_total += time.perf_counter() - t0
                except LearningError:
                    continue
                n += 1
                ours.append(r.n_encodes)
                errs.append(r.relative_error)
                within += r.relative_error <= 0.03
                base.append(bisection(codec, img, t)[1])
        mo, mb = sum(ours) / n, sum(base) / n
        line = (
            f"{name:9} {mo:7.2f} {mb:7.2f} {mo / mb:6.2f} {100 * sum(errs) / n:8.2f}% "
            f"{100 * max(errs):7.2f}% {within:4d}/{n:<3d} {t_total / n:8.2f}"
        )
        print(line, flush=True)
        lines.append(line)


if __name__ == "__main__":
    main()
