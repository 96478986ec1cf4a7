"""Peak memory (RSS) of fitting DPL weights on many triplets.

Two figures, each measured in a fresh subprocess (``ru_maxrss``):

* ``command``: the whole ``python -m learning fit`` (set reading, hashing, PNG decoding, backbone, cache
  writing, the fit, the weight file) with a cold cache on a BAPPS dataset of ``--command-triplets``
  training triplets (+ 20 % validation triplets) on disk. Default 50,000, made like the site's data
  (``--distortions 10 --pairs-per-ref 10``: each 64×64 Kodak reference patch has 10 real-codec
  distortions, 10 of their pairs are triplets; every triplet's ref/p0/p1 files are written, so images
  repeat across files as in an export). ``--distortions 0``: a fresh reference per triplet.
* ``fit-stage``: the weight fit (``learning.fitting.fit.fit_weights``) alone on N cached vector pairs
  (N×1152 float32 ×2 for AlexNet): real DPL channel distances of K codec-distorted Kodak patches (random
  AlexNet), tiled to N rows with small multiplicative jitter; judges from a synthetic observer.

Usage: python -m bench.fit_memory [--n 50000] [--k 2000] [--command-triplets 50000] [--distortions 10]
       [--pairs-per-ref 10] [--stage fit|command]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from learning.data.shared import KODAK_DIR

ROOT = Path(__file__).resolve().parents[1]
KODAK = KODAK_DIR


def fit_stage(n: int, k: int) -> None:
    import torch

    from learning import DPL
    from learning.data.bapps import to_tensor
    from learning.fitting.fit import fit_weights
    from learning.fitting.synthetic import make_triplets, truth_weights

    torch.set_num_threads(2)
    model = DPL("alex", backbone=None, seed=0)
    trip = make_triplets(sorted(KODAK.glob("*.png")), k, 64, seed=0, mix=False)
    with torch.inference_mode():
        parts = []
        for i in range(0, k, 128):
            c = trip[i:i + 128]
            parts.append(model.triplet_channel_distances(*(to_tensor([t[j] for t in c]) for j in range(3))))
        m0 = torch.cat([p[0] for p in parts])
        m1 = torch.cat([p[1] for p in parts])
    del trip, parts
    g = torch.Generator().manual_seed(0)
    total = n + n // 5
    idx = torch.arange(total) % k
    M0 = m0[idx] * (1 + 0.05 * torch.rand(total, 1, generator=g))
    M1 = m1[idx] * (1 + 0.05 * torch.rand(total, 1, generator=g))
    w = torch.cat(truth_weights(model.channels))
    diff = (M0 @ w - M1 @ w).double()
    p1 = torch.sigmoid(diff / (0.1 * diff.std()))[:, None]
    h = (torch.rand(total, 5, generator=g).double() < p1).double().mean(1)
    h = h.float()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    res = fit_weights(M0[:n], M1[:n], h[:n], M0[n:], M1[n:], h[n:])
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"fit-stage: N={n} train + {total - n} val vectors of {m0.shape[1]} floats: fit {dt:.1f}s, "
          f"{res.rounds} best round, val 2AFC {res.val_2afc:.4f}; peak RSS {peak:.0f} MiB "
          f"(before the fit {rss_before:.0f} MiB)")


def command(n: int, distortions: int, pairs_per_ref: int) -> None:
    from learning.fitting.synthetic import make_dataset

    work = Path(tempfile.mkdtemp(prefix="fit_memory_"))
    design = dict(distortions=distortions, pairs_per_ref=pairs_per_ref) if distortions else {}
    t0 = time.perf_counter()
    make_dataset(work / "data", sorted(KODAK.glob("*.png")), n_train=n, n_val=max(50, n // 5), mix=False,
                 **design)
    print(f"command: dataset of {n} train + {max(50, n // 5)} val triplets (64x64, "
          + (f"{distortions} distortions x {pairs_per_ref} pairs per reference" if design
             else "a fresh reference per triplet") + f") made in {time.perf_counter() - t0:.0f}s")
    cmd = [sys.executable, "-m", "learning", "fit", "--data", str(work / "data" / "train"), "--val",
           str(work / "data" / "val"), "--backbone", "random:0", "--out", str(work / "w.dpl"), "--cache",
           str(work / "cache"), "--quiet", "--threads", "2"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True, capture_output=True,
                         text=True).stdout
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"command: python -m learning fit on {n} train triplets (cold cache): "
          f"{time.perf_counter() - t0:.1f}s, peak RSS {peak:.0f} MiB")
    print("  " + out.strip().replace("\n", "\n  "))
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--k", type=int, default=2000)
    ap.add_argument("--command-triplets", type=int, default=50000)
    ap.add_argument("--distortions", type=int, default=10, help="0: a fresh reference per triplet")
    ap.add_argument("--pairs-per-ref", type=int, default=10)
    ap.add_argument("--stage", choices=["fit", "command"], help="run one stage only")
    args = ap.parse_args()
    for stage in [args.stage] if args.stage else ["fit", "command"]:
        # each stage in a fresh process: ru_maxrss is a high-water mark
        code = ("from bench import fit_memory as m; "
                + (f"m.fit_stage({args.n}, {args.k})" if stage == "fit" else
                   f"m.command({args.command_triplets}, {args.distortions}, {args.pairs_per_ref})"))
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
