"""Benchmark: ``train-codec``'s training step against CompressAI's own training loop, DPL against MSE, and
the DataLoader pipeline against pre-loaded tensors, each ratio measured in one run (interleaved rounds).

1. ours vs CompressAI: ``train_one_epoch`` of ``examples/train.py`` from CompressAI's source distribution
   (downloaded from PyPI, sha256 checked) on the same model, batch and crop, MSE; target ours ≥ 1.5× its
   steps/s with ``--amp bf16`` (what ``--amp auto`` picks on a CPU with AMX; CompressAI's loop has no mixed
   precision), beside ours in full precision (channels-last) and in CompressAI's contiguous layout.
2. DPL vs MSE: our step with ``--loss dpl:`` (LPIPS-alex lin weights on the real ImageNet AlexNet of
   ``../shared/data/backbones``) against ``--loss mse``; target ≤ 1.2×.
3. pipeline: ``train-codec``'s whole loop (DataLoader with worker processes decoding and cropping PNGs)
   against the same steps fed from tensors already in memory; target ≥ 0.9×.

    .venv/bin/python -m bench.codec_step [--arch bmshj2018-hyperprior --N 128 --M 192 --batch 8 --crop 128]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import io
import re
import statistics
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

import torch

from learning import compat
from learning.data.shared import KODAK_DIR, data_dir
from learning.device import native_bf16
from learning.training.loop import TrainConfig, _Run

ALEX = data_dir() / "backbones/alexnet-imagenet-features.pth"
KODAK = KODAK_DIR
SDIST = "compressai==1.2.8"
REPO = Path(__file__).resolve().parents[1]


def compressai_train_py(cache: Path) -> Path:
    """``examples/train.py`` of CompressAI's sdist from PyPI (sha256 as PyPI lists it)."""
    name, version = SDIST.split("==")
    target = cache / f"{name}-{version}" / "examples" / "train.py"
    if target.is_file():
        return target
    index = urllib.request.urlopen(f"https://pypi.org/simple/{name}/", timeout=60).read().decode()
    filename = f"{name}-{version}.tar.gz"
    found = re.search(r'href="([^"#]*/' + re.escape(filename) + r')#sha256=([0-9a-f]{64})"', index)
    if not found:
        raise SystemExit(f"{filename} is not on PyPI's simple index")
    data = urllib.request.urlopen(found.group(1), timeout=300).read()
    if hashlib.sha256(data).hexdigest() != found.group(2):
        raise SystemExit(f"{filename}: sha256 mismatch")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember(f"{name}-{version}/examples/train.py")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(tar.extractfile(member).read())
    return target


class _Batches:
    """What ``train_one_epoch`` iterates: the same tensors as ours, ``len`` and ``.dataset`` for its log."""

    def __init__(self, batches: list[torch.Tensor]):
        self.batches = batches
        self.dataset = [None] * sum(len(b) for b in batches)

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def theirs(train_py: Path, args, batches: list[torch.Tensor]):
    compat.ensure_torchvision()
    spec = importlib.util.spec_from_file_location("compressai_examples_train", train_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from compressai.losses import RateDistortionLoss

    from learning.architectures import build_model

    torch.manual_seed(0)
    model = build_model(args.arch, args.N, args.M)
    opt, aux = mod.configure_optimizers(model, argparse.Namespace(learning_rate=1e-4, aux_learning_rate=1e-3))
    criterion = RateDistortionLoss(lmbda=0.01)
    loader = _Batches(batches)

    def run() -> float:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # it prints every 10 steps
            mod.train_one_epoch(model, criterion, loader, opt, aux, 0, 1.0)
        return (time.perf_counter() - t0) / len(batches)

    return run


def ours(cfg: TrainConfig, batches: list[torch.Tensor]):
    r = _Run(cfg, 0, 1, torch.device("cpu"))

    def run() -> float:
        t0 = time.perf_counter()
        for x in batches:
            r._one_step(x, None)
        return (time.perf_counter() - t0) / len(batches)

    return run


def whole_loop(cfg: TrainConfig, steps: int, directory: Path):
    """``train-codec``'s loop for ``steps`` steps (DataLoader, workers, logging, the final checkpoint)."""
    counter = [0]

    def run() -> float:
        counter[0] += 1
        c = TrainConfig(**{**cfg.__dict__, "steps": steps, "out": str(directory / f"loop{counter[0]}.pt")})
        r = _Run(c, 0, 1, torch.device("cpu"))
        t0 = time.perf_counter()
        r.run()
        return (time.perf_counter() - t0) / steps

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="bmshj2018-hyperprior")
    ap.add_argument("--N", type=int, default=128)
    ap.add_argument("--M", type=int, default=192)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=str(REPO / "var/cache/bench"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train_py = compressai_train_py(Path(args.cache))
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "train").mkdir()
        for i in range(1, 17):
            (d / "train" / f"kodim{i:02d}.png").symlink_to(KODAK / f"kodim{i:02d}.png")
        dpl = d / "lpips_alex.pt"
        from learning.dpl import DPL
        from learning.dpl.weightfile import save_weights

        save_weights(DPL("alex", weights="lpips", backbone=str(ALEX)), dpl, {"note": "bench"})
        cfg = TrainConfig(data=str(d / "train"), out=str(d / "x.pt"), arch=args.arch, N=args.N, M=args.M,
                          crop=args.crop, batch=args.batch, steps=args.steps, lmbda=0.01,
                          device=torch.device("cpu"),
                          workers=args.workers, progress=False, val_every=10**6, log_every=10**6)
        # the crops the DataLoader would deliver, pre-loaded
        from learning.training.data import CropDataset, StepBatches

        ds = CropDataset(cfg.data, args.crop, 0)
        keys = StepBatches(len(ds), args.batch, 0, 0, args.steps)
        batches = [torch.stack([ds[k][0] for k in b]) for b in keys]
        runs = {
            "compressai": theirs(train_py, args, batches),
            "ours_mse": ours(cfg, batches),
            "ours_bf16": ours(TrainConfig(**{**cfg.__dict__, "amp": "bf16"}), batches),
            "ours_contiguous": ours(TrainConfig(**{**cfg.__dict__, "memory_format": "contiguous"}), batches),
            "ours_dpl": ours(TrainConfig(**{**cfg.__dict__, "loss": f"dpl:{dpl}", "dpl_backbone": str(ALEX)}),
                             batches),
            "ours_loop": whole_loop(cfg, args.steps, d),
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        for f in runs.values():  # warm-up
            f()
        for _ in range(args.rounds):  # interleaved, so load changes hit all alike
            for k, f in runs.items():
                times[k].append(f())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.arch} N={args.N} M={args.M}, batch {args.batch}x{args.crop}², {args.threads} threads, "
          f"{args.rounds} rounds x {args.steps} steps, DataLoader workers {args.workers}")
    for k, v in times.items():
        rounds = ", ".join(f"{t * 1000:.0f}" for t in v)
        print(f"{k:11s} median {med[k] * 1000:8.1f} ms/step  (rounds: {rounds})")
    print(f"ours (--amp bf16: AMX={native_bf16(torch.device('cpu'))}) vs CompressAI examples/train.py, "
          f"steps/s: {med['compressai'] / med['ours_bf16']:.2f}x (target >= 1.5)")
    print(f"ours (full precision) vs CompressAI examples/train.py, steps/s: "
          f"{med['compressai'] / med['ours_mse']:.2f}x")
    print(f"ours, contiguous layout (CompressAI's) vs CompressAI, steps/s: "
          f"{med['compressai'] / med['ours_contiguous']:.2f}x")
    print(f"DPL step / MSE step: {med['ours_dpl'] / med['ours_mse']:.2f}x (target <= 1.2)")
    print(f"DataLoader loop vs pre-loaded tensors, steps/s: {med['ours_mse'] / med['ours_loop']:.2f}x "
          "(target >= 0.9)")


if __name__ == "__main__":
    main()
