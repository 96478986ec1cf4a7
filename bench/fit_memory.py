"""Peak memory (RSS) of fitting DPL weights on many triplets.

Two figures, each measured in a fresh subprocess (``ru_maxrss``):

* ``fit-stage``: the weight fit (``learning.fitting.fit.fit_weights``) on N cached vector pairs
  (N×1152 float32 ×2 for AlexNet) — the part whose memory grows with the dataset. The vectors are real
  DPL channel distances of K codec-distorted Kodak patches (random AlexNet), tiled to N rows with small
  multiplicative jitter; judges from a synthetic observer. Default N = 50,000 (train) + 10,000 (val).
* ``command``: the full ``python -m learning fit`` (PNG reading, backbone, cache, fit) on a BAPPS dataset of
  ``--command-triplets`` triplets on disk — making 50,000 PNG triplets takes too long on 2 cores, so this
  one runs at a smaller N; its growth with N is the cached vectors (4.6 KB per vector) plus the fit.

Usage: python bench/fit_memory.py [--n 50000] [--k 2000] [--command-triplets 2000]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KODAK = ROOT.parent / "shared" / "data" / "kodak"


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


def command(n: int) -> None:
    from learning.fitting.synthetic import make_dataset

    work = Path(tempfile.mkdtemp(prefix="fit_memory_"))
    make_dataset(work / "data", sorted(KODAK.glob("*.png")), n_train=n, n_val=max(50, n // 5), mix=False)
    cmd = [sys.executable, "-m", "learning", "fit", "--data", str(work / "data" / "train"), "--val",
           str(work / "data" / "val"), "--backbone", "random:0", "--out", str(work / "w.dpl"), "--cache",
           str(work / "cache"), "--quiet", "--threads", "2"]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True, capture_output=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"command: python -m learning fit on {n} train triplets (64x64, cold cache): "
          f"{time.perf_counter() - t0:.1f}s, peak RSS {peak:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--k", type=int, default=2000)
    ap.add_argument("--command-triplets", type=int, default=2000)
    ap.add_argument("--stage", choices=["fit", "command"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage == "fit":
        return fit_stage(args.n, args.k)
    if args.stage == "command":
        return command(args.command_triplets)
    for stage in ("fit", "command"):
        subprocess.run([sys.executable, __file__, "--stage", stage, "--n", str(args.n), "--k", str(args.k),
                        "--command-triplets", str(args.command_triplets)], check=True)


if __name__ == "__main__":
    main()
