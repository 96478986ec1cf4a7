"""Benchmark: rate targeting per codec on Kodak — encodes per target, achieved error, misses.

Run: .venv/bin/python -m bench.rate_targeting [--images 24 | --names kodim05,kodim13,kodim23]
     [--targets 0.1,0.15,...,2] [--tolerance 0.01] [--codecs jpeg,jpeg444,webp,heic]
Baseline in the same run: a plain bisection on the quality parameter (same tolerance, same budget),
so the printed ratio is "encodes with our search / encodes with bisection". A target below the codec's
lowest rate (or above its highest) for an image is counted as unreachable, not as a miss; a miss is a
reachable target whose closest encode is off by more than the tolerance, listed with its error.
"""

from __future__ import annotations

import argparse
import time

from PIL import Image

from learning.codecs import get_codec
from learning.codecs.ratecontrol import encode_at_bpp
from learning.data.shared import KODAK_DIR
from learning.errors import LearningError

KODAK = KODAK_DIR
CODECS = ["jpeg", "jpeg444", "webp", "jpeg2000", "avif", "heic", "jxl"]
TARGETS = "0.1,0.15,0.2,0.25,0.3,0.4,0.5,0.6,0.75,1.0,1.25,1.5,1.75,2.0"


def bisection(codec, image, target, tol, max_encodes):
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
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--names", default="", help="these Kodak images instead, e.g. kodim05,kodim13,kodim23")
    ap.add_argument("--targets", default=TARGETS)
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--max-encodes", type=int, default=16)
    ap.add_argument("--codecs", default=",".join(CODECS))
    ap.add_argument("--no-baseline", action="store_true", help="skip the bisection baseline")
    args = ap.parse_args()
    targets = [float(t) for t in args.targets.split(",")]
    files = ([KODAK / f"{n}.png" for n in args.names.split(",")] if args.names
             else sorted(KODAK.glob("kodim*.png"))[: args.images])
    images = [(f.stem, Image.open(f).convert("RGB")) for f in files]
    tol = args.tolerance
    print(f"{len(images)} Kodak images x {len(targets)} targets {targets[0]}–{targets[-1]} bpp; "
          f"tolerance {tol:.0%}, max {args.max_encodes} encodes")
    print(f"{'codec':9} {'encodes':>7} {'bisect':>7} {'ratio':>6} {'mean err':>9} {'max err':>8} "
          f"{'within':>8} {'unreach':>7} {'s/target':>8}")
    for name in args.codecs.split(","):
        codec = get_codec(name)
        ours, base, errs, misses, unreachable, t_total = [], [], [], [], 0, 0.0
        for stem, img in images:
            cache: dict = {}
            for t in targets:
                try:
                    t0 = time.perf_counter()
                    r = encode_at_bpp(codec, img, t, tolerance=tol, max_encodes=args.max_encodes, cache=cache)
                    t_total += time.perf_counter() - t0
                except LearningError as exc:
                    unreachable += 1
                    print(f"  {name} {stem}@{t:g}: {exc}", flush=True)
                    continue
                ours.append(r.n_encodes)
                errs.append(r.relative_error)
                if r.relative_error > tol:
                    misses.append(f"{stem}@{t:g}: {100 * r.relative_error:.2f}% (q {r.encoded.quality:g})")
                if not args.no_baseline:
                    base.append(bisection(codec, img, t, tol, args.max_encodes)[1])
        n = len(errs)
        mo = sum(ours) / n
        mb = sum(base) / n if base else float("nan")
        print(f"{name:9} {mo:7.2f} {mb:7.2f} {mo / mb:6.2f} {100 * sum(errs) / n:8.2f}% "
              f"{100 * max(errs):7.2f}% {n - len(misses):4d}/{n:<3d} {unreachable:7d} {t_total / n:8.2f}",
              flush=True)
        if misses:
            print(f"  {name} misses: " + "; ".join(misses), flush=True)


if __name__ == "__main__":
    main()
