"""Benchmark aid: the closed loop's study-2 preference predicted without a crowd, for any codec checkpoints.

The hidden observer of a finished ``manage.py closed_loop --out OUT`` run (its terms and spread calibrated on
the run's own study-2 triplets, as the simulated crowd calibrates them) judges the real bitstreams of the
run's kodim17–24: P(A ≻ B) = mean over the images of Φ((d_B − d_A) / (τ·s)), the crowd's model without its
noise. It reproduces study 2 (bench/README.md "Session 13": 0.642 predicted, 0.621 measured), so variants of a
fine-tune can be compared in minutes instead of a 20-minute loop. The first checkpoint is the reference B.

    .venv/bin/python -m bench.loop_predict OUT/work REF.pt A.pt [B.pt ...] [--observer SPEC] [--noise 0.5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from learning.compat import ensure_torchvision

ensure_torchvision()

from learning.codecs import get_codec  # noqa: E402  (after the torchvision shim)
from learning.data.bapps import load_2afc, load_triplet  # noqa: E402
from learning.data.shared import backbone_file  # noqa: E402
from learning.observers import ObserverDistance, parse_observer, phi, spread  # noqa: E402
from webapp.simcrowd.loop.config import OUT_OF_FAMILY  # noqa: E402  (the loop's default hidden observer)


def calibrated(spec: str, study2: Path) -> tuple[ObserverDistance, float]:
    """The observer with its term scales set on ``study2``'s triplets, and the spread s of its distances."""
    obs = parse_observer(spec)
    terms = []
    for t in (t for s in load_2afc([study2]) for t in s.triplets):
        ref, a, b, _ = load_triplet(t)
        terms.append((obs.term_distances(ref, a), obs.term_distances(ref, b)))
    obs.calibrate([[d0[i] - d1[i] for d0, d1 in terms] for i in range(len(obs.caches))])
    return obs, spread([obs.combine(d0) - obs.combine(d1) for d0, d1 in terms])


def codec_distances(obs: ObserverDistance, ckpt: Path, refs: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """The observer's distance of each image's decoded real bitstream, and the bpp over all images."""
    codec = get_codec(f"ckpt:{ckpt}")
    dist, bits = [], 0
    for ref in refs:
        enc = codec.encode(Image.fromarray(ref), 0)
        bits += 8 * len(enc.data)
        dist.append(obs.distance(ref, np.asarray(codec.decode(enc.data).convert("RGB"))))
    return np.array(dist), bits / sum(r.shape[0] * r.shape[1] for r in refs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path, help="a closed_loop run's OUT/work folder")
    ap.add_argument("ckpts", type=Path, nargs="+", help="the reference checkpoint, then the ones to compare")
    ap.add_argument("--observer", default=None, help="observer spec (default: the loop's out-of-family one)")
    ap.add_argument("--noise", type=float, default=0.5, help="τ of the simulated crowd")
    args = ap.parse_args()
    if len(args.ckpts) < 2:
        ap.error("name the reference checkpoint and at least one to compare with it")
    spec = args.observer or OUT_OF_FAMILY.format(vgg=backbone_file("vgg16"))
    obs, s = calibrated(spec, args.work / "loop-study2" / "train")
    images = sorted((args.work / "kodim17-24").glob("*.png"))
    refs = [np.asarray(Image.open(p).convert("RGB")) for p in images]
    ref_d, ref_bpp = codec_distances(obs, args.ckpts[0], refs)
    print(f"{args.ckpts[0]}: {ref_bpp:.4f} bpp, observer {ref_d.mean():.4f} (reference)")
    for ckpt in args.ckpts[1:]:
        d, bpp = codec_distances(obs, ckpt, refs)
        p = float(np.mean([phi((b - a) / (args.noise * s)) for a, b in zip(d, ref_d)]))
        print(f"{ckpt}: {bpp:.4f} bpp, observer {d.mean():.4f}, predicted P(≻ reference) {p:.3f}")


if __name__ == "__main__":
    main()
