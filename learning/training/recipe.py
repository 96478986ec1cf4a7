"""The learned-codec training recipe (``python -m learning codec-recipe``; the runs of bench/README.md): an
MSE base model, fine-tuned to one checkpoint per λ, each then fine-tuned with the DPL (LPIPS-alex lin weights
on the real ImageNet AlexNet), and the R–D table.

Stages (each skipped when its checkpoint is finished, so the script resumes after an interruption):
  1. base: ``train-codec`` from random weights (or from ``--base-init``, e.g. the shared base, to train it
     further) at ``--base-lmbda``, by default the highest λ of the curve:
     a transform trained at a high rate keeps its detail when fine-tuned down, one trained in the middle
     never learns what the high-rate points need (session 9: +7.8 % BD-rate vs JPEG, against +36.2 %
     with a mid-λ base; bench/README.md);
  2. mse: ``train-codec --init base`` for every λ of ``--lmbdas``;
  3. dpl: ``train-codec --init mse_λ --loss dpl:...`` for every λ (λ_dpl = λ·``--dpl-scale``);
  4. rd: ``python -m learning rd`` on the test images, JPEG as the anchor, PSNR / MS-SSIM / LPIPS-alex.
Fine-tunes run ``--parallel`` at a time with one thread each (on 2 cores this beats one 2-thread run).
Every run takes ``--amp`` (default auto: bf16 where the CPU has AMX or on CUDA, twice the steps/s here at
the same loss; bench/README.md).

    .venv/bin/python -m learning codec-recipe --train var/codec/train --val var/codec/val --out var/codec
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from learning import checkpoint
from learning.data.shared import data_dir
from learning.dpl import DPL
from learning.dpl.weightfile import save_weights

REPO = Path(__file__).resolve().parents[2]
ALEX = data_dir() / "backbones/alexnet-imagenet-features.pth"


def finished(path: Path, steps: int) -> bool:
    if not path.is_file():
        return False
    blob = checkpoint.load(path)
    return bool(blob.get("finished")) and blob["step"] >= steps


def train(args, out: Path, steps: int, extra: list[str], threads: int) -> dict:
    """One ``train-codec`` run (resumed when a partial checkpoint exists); returns its wall time."""
    if finished(out, steps):
        return {"out": str(out), "skipped": True}
    cmd = [sys.executable, "-m", "learning", "train-codec", "--data", args.train, "--val", args.val,
           "--crop", str(args.crop), "--batch", str(args.batch), "--steps", str(steps), "--workers", "1",
           "--threads", str(threads), "--val-every", str(args.val_every), "--log-every", "100",
           "--no-progress", "--amp", args.amp, "--out", str(out), *extra]
    if out.is_file():
        cmd.append("--resume")
    t0 = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".out"), "a") as log:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        r = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=log, env=env)
    if r.returncode:
        raise SystemExit(f"train-codec failed for {out} (see {out.with_suffix('.out')})")
    return {"out": str(out), "wall_s": time.time() - t0, "steps": steps}


def run(args: argparse.Namespace) -> int:
    """The stages of ``args.stages`` with the options of ``python -m learning codec-recipe``; 0."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dpl = out / "lpips_alex_real.pt"
    if not dpl.is_file():
        save_weights(DPL("alex", weights="lpips", backbone=str(ALEX)), dpl,
                     {"note": "LPIPS v0.1 alex lin weights on the real ImageNet AlexNet"})
    config = {k: v for k, v in vars(args).items() if k not in ("command", "func")}  # the options alone
    report: dict = {"config": config, "stages": {}}
    base = out / "mse_base.pt"
    stages = set(args.stages.split(","))
    if "base" in stages:
        report["stages"]["base"] = train(args, base, args.base_steps, [
            "--arch", args.arch, "--N", str(args.N), "--M", str(args.M), "--lmbda", str(args.base_lmbda),
            "--lr", str(args.base_lr), "--lr-schedule", "cosine",
            *(["--init", args.base_init] if args.base_init else [])], threads=2)
    lmbdas = [float(v) for v in args.lmbdas.split(",")]
    common = ["--lr", str(args.ft_lr), "--lr-schedule", "cosine"]
    with ThreadPoolExecutor(args.parallel) as pool:
        if "mse" in stages:
            report["stages"]["mse"] = list(pool.map(lambda lm: train(
                args, out / "mse" / f"mse_{lm}.pt", args.ft_steps,
                ["--init", str(base), "--lmbda", str(lm), *common], threads=1), lmbdas))
        if "dpl" in stages:
            report["stages"]["dpl"] = list(pool.map(lambda lm: train(
                args, out / "dpl" / f"dpl_{lm}.pt", args.dpl_steps,
                ["--init", str(out / "mse" / f"mse_{lm}.pt"), "--lmbda", str(lm * args.dpl_scale),
                 "--loss", f"dpl:{dpl}", "--dpl-backbone", str(ALEX), *common], threads=1), lmbdas))
    if "rd" in stages:
        test = out / "test"
        test.mkdir(exist_ok=True)
        for pattern in args.test_glob.split(","):
            for f in sorted(Path(args.test).glob(pattern)):
                if not (test / f.name).exists():
                    (test / f.name).symlink_to(f.resolve())
        t0 = time.time()
        # JPEG is the BD-rate anchor; HEIC (HEVC intra, what BPG is) the strongest classical codec here
        finals = {st: f"{st}_*[0-9].pt" for st in ("mse", "dpl")}  # not the .best.pt beside each
        trained = [f"ckpt:{out}/{st}/{glob}" for st, glob in finals.items() if any((out / st).glob(glob))]
        curves = ",".join(["jpeg", "heic", *trained])
        cmd = [sys.executable, "-m", "learning", "rd", "--images", str(test), "--codecs", curves,
               "--bpp", "0.1,0.15,0.2,0.3,0.4,0.5,0.6",
               "--metrics", f"psnr,ms-ssim,lpips-alex:{ALEX}", "--out", str(out / "rd")]
        if subprocess.run(cmd, cwd=REPO).returncode:
            raise SystemExit(f"rd failed on {test} (its error is above)")
        report["stages"]["rd"] = {"wall_s": time.time() - t0, "out": str(out / "rd")}
    (out / f"report_{'_'.join(sorted(stages))}.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0

