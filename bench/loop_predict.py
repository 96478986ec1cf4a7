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
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")  # the loop's modules import the models
import django  # noqa: E402

django.setup()

from learning.data.bapps import load_2afc  # noqa: E402
from learning.data.shared import backbone_file  # noqa: E402
from learning.observers import parse_observer, phi, spread  # noqa: E402
from webapp.simcrowd.loop.codec_training import observer_codec_distances  # noqa: E402
from webapp.simcrowd.loop.config import OUT_OF_FAMILY  # noqa: E402  (the loop's default hidden observer)
from webapp.simcrowd.loop.studies import observer_distances  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path, help="a closed_loop run's OUT/work folder")
    ap.add_argument("ckpts", type=Path, nargs="+", help="the reference checkpoint, then the ones to compare")
    ap.add_argument("--observer", default=None, help="observer spec (default: the loop's out-of-family one)")
    ap.add_argument("--noise", type=float, default=0.5, help="τ of the simulated crowd")
    args = ap.parse_args()
    if len(args.ckpts) < 2:
        ap.error("name the reference checkpoint and at least one to compare with it")
    obs = parse_observer(args.observer or OUT_OF_FAMILY.format(vgg=backbone_file("vgg16")))
    # terms and spread calibrated on the run's study-2 triplets, as the simulated crowd calibrates them
    triplets = [t for s in load_2afc([args.work / "loop-study2" / "train"]) for t in s.triplets]
    d2 = observer_distances(obs, triplets)
    s = spread(list(d2[:, 0] - d2[:, 1]))
    res = observer_codec_distances(obs, dict(enumerate(args.ckpts)), args.work / "kodim17-24")
    ref = res[0]
    print(f"{args.ckpts[0]}: {ref['bpp']:.4f} bpp, observer {ref['mean']:.4f} (reference)")
    for k in range(1, len(args.ckpts)):
        d = res[k]
        pairs = zip(d["per_image"], ref["per_image"])
        p = float(np.mean([phi((b - a) / (args.noise * s)) for a, b in pairs]))
        print(f"{args.ckpts[k]}: {d['bpp']:.4f} bpp, observer {d['mean']:.4f}, predicted P(≻ ref) {p:.3f}")


if __name__ == "__main__":
    main()
