"""Fit speed: cold ``python -m learning fit`` against the lpips package's own ``Trainer``.

Data: synthetic 2AFC triplets of 64×64 Kodak patches distorted by real codecs (Pillow JPEG / WebP at
random qualities), judged by a synthetic observer (nonnegative ground-truth weights on a seeded random
AlexNet, logistic noise, 5 judges) — written to disk in the BAPPS layout; train and val patches come
from disjoint Kodak images. Design (``--distortions D --pairs-per-ref P``, default 10 and 10): as the
site builds trials, each reference patch has D distorted versions and P of their pairs are triplets, so
images repeat across triplets (the export writes them to every triplet's files). ``--distortions 0``:
a fresh reference and two fresh distortions per triplet (no image repeats).

* ``fit``: subprocess (interpreter start-up, imports, PNG reading, one backbone pass per unique image with
  an empty cache, the L-BFGS fit, writing the file) — wall time.
* ``lpips.Trainer`` (lpips 0.1.4, net alex, same random backbone loaded into it, lr 1e-2, batch 50, its
  Adam/beta1 0.5 defaults) on the same triplets: its best chance — images preloaded as tensors (its PNG
  reading not charged), start-up not charged; epochs until its held-out 2AFC reaches fit's, or
  ``--max-epochs``.
* floor: one backbone pass over every unique image (each reference once, not once per pair), in memory,
  batched; and, for contrast, over all 3 images of every triplet.

Usage: python -m bench.fit_speed [--triplets 5000] [--distortions 10] [--pairs-per-ref 10] [--threads 2]
       [--max-epochs 10]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from learning import twoafc
from learning.cli.fit import keep_freed_memory
from learning.compat import ensure_torchvision
from learning.data.shared import KODAK_DIR
from learning.fitting.synthetic import make_dataset

ROOT = Path(__file__).resolve().parents[1]
KODAK = KODAK_DIR


def tensors(triplets, h):
    r, a, b = (torch.from_numpy(np.stack([t[j] for t in triplets])).permute(0, 3, 1, 2).float() / 255
               for j in range(3))
    return r, a, b, torch.as_tensor(h, dtype=torch.float32)


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--triplets", type=int, default=5000, help="total triplets (80%% train, 20%% val)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-epochs", type=int, default=10)
    ap.add_argument("--kodak", default=str(KODAK))
    ap.add_argument("--distortions", type=int, default=10, help="distorted versions per reference (0: "
                    "fresh reference per triplet)")
    ap.add_argument("--pairs-per-ref", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # what the fit command does for itself; here it helps the trainer and the floor
    sources = sorted(Path(args.kodak).glob("*.png"))
    n_val = max(50, args.triplets // 5)
    n_train = args.triplets - n_val
    work = Path(tempfile.mkdtemp(prefix="fit_speed_"))
    t0 = time.perf_counter()
    design = dict(distortions=args.distortions, pairs_per_ref=args.pairs_per_ref) if args.distortions else {}
    info = make_dataset(work / "data", sources, "alex", backbone_seed=0, n_train=n_train, n_val=n_val,
                        mix=False, seed=0, **design)
    made = time.perf_counter() - t0
    unique = {id(img): img for t in info["train"] + info["val"] for img in t}
    print(f"dataset: {n_train} train + {n_val} val triplets of 64x64, "
          + (f"{args.distortions} distortions per reference, {args.pairs_per_ref} pairs per reference"
             if design else "a fresh reference per triplet")
          + f": {len(unique)} unique images in {3 * args.triplets} triplet slots ({made:.0f}s to make)")
    ceiling = twoafc.score(info["val_dist"][:, 0], info["val_dist"][:, 1], info["val_h"])
    print(f"val 2AFC of the true weights (ceiling): {ceiling:.4f}")
    print("times: wall seconds, and CPU seconds (user+sys, all threads) in brackets: the machine is shared, "
          "CPU time drifts less with the load")

    # --- cold fit, as a user runs it; run again after every trainer epoch (fresh cache each time), so
    # that fit and trainer are timed over the same stretch of a shared machine's drifting load
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def fit_cmd(tag: str, out: str | None = None) -> list[str]:
        return [sys.executable, "-m", "learning", "fit", "--data", str(work / "data" / "train"), "--val",
                str(work / "data" / "val"), "--net", "alex", "--backbone", "random:0",
                "--out", str(work / f"w-{out or tag}.dpl"), "--cache", str(work / f"cache-{tag}"),
                "--threads", str(args.threads), "--quiet"]

    def timed_run(cmd: list[str]) -> tuple[float, float, str]:
        c0, t0 = children_cpu(), time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        return time.perf_counter() - t0, children_cpu() - c0, out

    fits: list[tuple[float, float]] = []

    def cold_fit(tag: str, verbose: bool = False) -> float:
        wall, cpu, out = timed_run(fit_cmd(tag))
        score = float(re.search(r"val 2AFC ([0-9.]+)", out).group(1))
        fits.append((wall, cpu))
        print(f"fit (cold, subprocess, run {tag}): {wall:.1f}s [{cpu:.1f}s]  val 2AFC {score:.4f} "
              f"({score / ceiling:.1%} of ceiling)")
        if verbose:
            print("  " + out.strip().replace("\n", "\n  "))
        if tag != "0":
            shutil.rmtree(work / f"cache-{tag}", ignore_errors=True)
        return score

    fit_val = cold_fit("0", verbose=True)
    wall, cpu, out = timed_run(fit_cmd("0", "refit"))
    print(f"refit (warm cache, subprocess): {wall:.1f}s [{cpu:.1f}s]")
    print("  " + out.strip().replace("\n", "\n  "))

    # --- floor: one backbone pass over every unique image (and, for contrast, over every triplet slot)
    model = info["observer"]
    tr = tensors(info["train"], info["train_h"])
    va = tensors(info["val"], info["val_h"])

    def backbone_pass(imgs: torch.Tensor) -> tuple[float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(imgs), 192):
                model._features(imgs[i:i + 192])
        return time.perf_counter() - t0, time.process_time() - c0

    uniq = torch.from_numpy(np.stack(list(unique.values()))).permute(0, 3, 1, 2).float() / 255
    floor = backbone_pass(uniq)
    slots = backbone_pass(torch.cat([torch.cat(tr[:3]), torch.cat(va[:3])]))
    print(f"floor (one backbone pass over the {len(uniq)} unique images, in memory): {floor[0]:.1f}s "
          f"[{floor[1]:.1f}s]; cold fit (run 0) is {fits[0][0] / floor[0]:.2f}x the floor "
          f"[{fits[0][1] / floor[1]:.2f}x]")
    print(f"  (a pass over all {3 * args.triplets} triplet slots: {slots[0]:.1f}s [{slots[1]:.1f}s])")

    # --- lpips.Trainer, its best chance
    ensure_torchvision()
    import lpips

    trainer = lpips.Trainer()
    trainer.initialize(model="lpips", net="alex", pnet_rand=True, is_train=True, lr=1e-2, use_gpu=False)
    trainer.net.net.load_state_dict(model.backbone.state_dict())
    to_pm1 = [x * 2 - 1 for x in tr[:3]]
    val_pm1 = [x * 2 - 1 for x in va[:3]]
    g = torch.Generator().manual_seed(0)
    wall_lp, cpu_lp, best, reached, best_at = 0.0, 0.0, 0.0, None, (0, 0.0, 0.0)
    for epoch in range(1, args.max_epochs + 1):
        c0, t0 = time.process_time(), time.perf_counter()
        trainer.net.train()
        perm = torch.randperm(n_train, generator=g)
        for i in range(0, n_train, 50):
            idx = perm[i:i + 50]
            trainer.set_input({"ref": to_pm1[0][idx], "p0": to_pm1[1][idx], "p1": to_pm1[2][idx],
                               "judge": tr[3][idx].view(-1, 1, 1, 1)})
            trainer.optimize_parameters()
        wall_lp += time.perf_counter() - t0
        cpu_lp += time.process_time() - c0
        trainer.net.eval()
        with torch.inference_mode():
            d = [torch.cat([trainer.forward(val_pm1[0][i:i + 100], val_pm1[j][i:i + 100]).flatten()
                            for i in range(0, n_val, 100)]).numpy() for j in (1, 2)]
        score = round(twoafc.score(d[0], d[1], va[3].numpy()), 4)  # fit's score is read as printed
        if score > best:
            best, best_at = score, (epoch, wall_lp, cpu_lp)
        print(f"  lpips.Trainer epoch {epoch}: {wall_lp:.1f}s [{cpu_lp:.1f}s] cumulative training, "
              f"val 2AFC {score:.4f}  (load average {os.getloadavg()[0]:.1f})")
        cold_fit(str(epoch))
        if score >= fit_val:
            reached = (epoch, wall_lp, cpu_lp)
            break
    t_fit, c_fit = (sum(f[i] for f in fits) / len(fits) for i in (0, 1))
    print(f"cold fit, mean of {len(fits)} runs: {t_fit:.1f}s [{c_fit:.1f}s] (slowest "
          f"{max(f[0] for f in fits):.1f}s [{max(f[1] for f in fits):.1f}s])")
    if reached:
        print(f"lpips.Trainer reached fit's val 2AFC after {reached[0]} epochs, {reached[1]:.1f}s "
              f"[{reached[2]:.1f}s]: fit is {reached[1] / t_fit:.1f}x faster [{reached[2] / c_fit:.1f}x]")
    else:
        print(f"lpips.Trainer did not reach {fit_val:.4f} in {args.max_epochs} epochs ({wall_lp:.1f}s "
              f"[{cpu_lp:.1f}s], best {best:.4f} after {best_at[0]} epochs): fit is at least "
              f"{wall_lp / t_fit:.1f}x faster [{cpu_lp / c_fit:.1f}x]; against the trainer's time to its own "
              f"(lower) best: {best_at[1] / t_fit:.1f}x [{best_at[2] / c_fit:.1f}x]")
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
