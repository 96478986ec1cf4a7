"""The closed loop's stage 3: ``train-codec`` runs in child processes (a base when none is given, then the
fine-tunes side by side), the base's rate and the λ of each loss that starts at MSE's share of distortion,
and the noise-free distances of the codecs' real bitstreams."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from django.core.management.base import CommandError
from PIL import Image

from learning import checkpoint
from learning.architectures import build_model
from learning.codecs import get_codec
from learning.observers import ObserverDistance
from learning.rd.evaluate import run_rd
from learning.training import initial_weights as initial
from learning.training.data import CropDataset
from learning.training.loop import log_path, rate
from learning.training.losses import build_distortion
from webapp.simcrowd.loop.config import ALEX, LoopConfig

REPO = Path(__file__).resolve().parents[3]


def train(out: Path, data: Path, val: Path, cfg: LoopConfig, *, steps: int, lmbda: float, loss: str,
          init: str | None, lr: float, target: float | None, threads: int) -> subprocess.Popen:
    """``python -m learning train-codec`` in a child process (one per fine-tune, run side by side)."""
    cmd = [sys.executable, "-m", "learning", "train-codec", "--data", str(data), "--val", str(val),
           "--val-crop", "0", "--crop", str(cfg.train_crop), "--batch", str(cfg.batch),
           "--steps", str(steps), "--val-every", str(steps), "--log-every", str(max(steps // 10, 1)),
           "--lmbda", f"{lmbda:.6g}", "--loss", loss, "--lr", str(lr), "--seed", str(cfg.seed),
           "--workers", "0", "--threads", str(threads), "--device", cfg.device, "--no-progress",
           "--amp", cfg.amp, "--out", str(out)]
    cmd += ["--init", init] if init else ["--arch", cfg.arch, "--N", str(cfg.N), "--M", str(cfg.M),
                                          "--lr-schedule", "cosine"]
    if target is not None:
        cmd += ["--target-bpp", f"{target:.6g}"]
    if loss.startswith("dpl:"):
        cmd += ["--dpl-backbone", str(ALEX)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)


def codec_distances(ckpts: dict[str, Path], images: Path, metrics: dict[str, str],
                    device: torch.device) -> dict[str, dict]:
    """Per codec, the mean of each metric between every image in ``images`` and its decoded real bitstream
    (noise-free: what the observers' answers are drawn around), with the bpp (``learning.rd.run_rd``)."""
    out = {}
    for name, path in ckpts.items():
        rows = run_rd(sorted(images.glob("*.png")), [f"ckpt:{path}"], [], list(metrics.values()),
                      progress=False, device=device)
        per_image = {label: [r.metrics[spec] for r in rows] for label, spec in metrics.items()}
        out[name] = {"bpp": float(np.mean([r.achieved_bpp for r in rows])),
                     **{label: float(np.mean(v)) for label, v in per_image.items()}, "per_image": per_image}
    return out


def finish(proc: subprocess.Popen, what: str) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        raise CommandError(f"{what}: train-codec failed (exit {proc.returncode})")
    return json.loads(out)


def train_rate(ckpt: Path, last: int = 3) -> float:
    """Mean training bpp of the last ``last`` train records of a run's log."""
    recs = [r for r in json.loads(log_path(ckpt).read_text()) if "bpp" in r and "loss" in r]
    return float(np.mean([r["bpp"] for r in recs[-last:]]))


def base_lambda(base: Path) -> float:
    """The λ (MSE) a train-codec checkpoint was trained with."""
    return float(checkpoint.load(base)["config"]["lmbda"])


def calibrate(base: Path, data: Path, losses: dict[str, str], mse_lmbda: float,
              cfg: LoopConfig) -> tuple[float, dict[str, float]]:
    """The base model's rate on a few training crops (bpp from its likelihoods) and, per ``--loss`` spec in
    ``losses``, a starting λ with the same share of distortion in the loss as MSE's on the base's output
    (the rate controller does the rest): λ = λ_mse · D_mse / D_loss."""
    start = initial.load_init(str(base), None, None, None)
    model = build_model(start.arch, start.N, start.M)
    initial.apply(model, start)
    model.eval()
    ds = CropDataset(str(data), cfg.train_crop, cfg.seed)
    x = torch.stack([ds[i][0] for i in range(min(len(ds), 8))])
    with torch.no_grad():
        out = model(x)
        x_hat = out["x_hat"].clamp(0, 1)
        bpp = float(rate(out["likelihoods"], x.shape[0] * x.shape[-2] * x.shape[-1]))
        d_mse = float(build_distortion("mse")(x_hat, x))
        lmbdas = {k: mse_lmbda * d_mse / max(float(build_distortion(spec, str(ALEX))(x_hat, x)), 1e-12)
                  for k, spec in losses.items()}
    return bpp, lmbdas


def observer_codec_distances(observer: ObserverDistance, ckpts: dict[str, Path], images: Path) -> dict:
    """Per codec, the hidden observer's noise-free distance (its terms scaled as calibrated on study 1)
    between each image in ``images`` and the decode of its real bitstream: its mean, the per-image values
    and the bitstreams' bpp over all images."""
    out = {}
    refs = {p.name: np.asarray(Image.open(p).convert("RGB")) for p in sorted(images.glob("*.png"))}
    pixels = sum(r.shape[0] * r.shape[1] for r in refs.values())
    for name, path in ckpts.items():
        codec = get_codec(f"ckpt:{path}")
        per, bits = [], 0
        for ref in refs.values():
            data = codec.encode(Image.fromarray(ref), 0).data
            bits += 8 * len(data)
            per.append(observer.distance(ref, np.asarray(codec.decode(data).convert("RGB"))))
        out[name] = {"mean": float(np.mean(per)), "per_image": per, "bpp": bits / pixels}
    return out

