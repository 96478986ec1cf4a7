"""``python -m learning fit``: fit nonnegative DPL channel weights to 2AFC judgments (BAPPS layout).

The backbone runs once per unique image (images are keyed by content, so a reference judged in many
triplets, or a stimulus shown in several, is computed once); the per-channel distance vectors of each
(reference, distorted) pair are cached on disk, keyed by backbone hash and image hashes, so refits skip
the backbone.

``--tune`` then fine-tunes the backbone end to end with the weights and head (the LPIPS "tune" variant,
``learning.fitting.tune``), keeping the epoch with the best val 2AFC; the weight file then carries the
tuned backbone.

``--device`` (auto | cpu | cuda | cuda:N | mps) runs the backbone, the weight fit and ``--tune`` there;
the weight file holds CPU tensors whatever the device.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import platform
import sys
from pathlib import Path

import torch

from learning.device import add_device_argument, resolve_device
from learning.dpl.backbones import parse_backbone_spec
from learning.errors import LearningError
from learning.fitting.pipeline import fit_dpl


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("fit", help="fit DPL weights to 2AFC judgments", description=__doc__)
    p.add_argument("--data", nargs="+", required=True, help="training set folders (BAPPS 2AFC layout)")
    p.add_argument("--val", nargs="+", help="validation set folders (default: hold out 10%% of --data)")
    p.add_argument("--net", default="alex", choices=["alex", "vgg", "squeeze"])
    p.add_argument("--backbone", default="imagenet",
                   help="imagenet | PATH (torchvision state dict) | random:SEED")
    p.add_argument("--out", required=True, help="weight file to write")
    p.add_argument("--cache", help="feature cache folder (default ~/.cache/dpl-lab; 'none' disables)")
    p.add_argument("--patch", default="full", help="'full' or a square crop size such as 64 (random, seeded)")
    p.add_argument("--rounds", "--epochs", dest="rounds", type=int, default=60,
                   help="max L-BFGS rounds (10 iterations each)")
    p.add_argument("--patience", type=int, default=5, help="rounds without val improvement before stopping")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", default="uniform",
                   help="weights the fit starts from: uniform (default), lpips (LPIPS's published lin "
                        "weights) or a DPL weight file of the same net")
    p.add_argument("--prior", type=float, default=0.0,
                   help="strength of the pull towards --start (default 0: early stopping only); channels "
                        "the judgments leave open keep their --start value")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--tune", action="store_true",
                   help="after the linear fit, fine-tune the backbone with weights and head (LPIPS 'tune')")
    p.add_argument("--tune-epochs", type=int, help="max tuning epochs (default 3; needs --tune)")
    p.add_argument("--tune-lr", type=float, help="Adam learning rate for tuning (default 1e-5; needs --tune)")
    add_device_argument(p)
    p.set_defaults(func=run)


def check_tune_args(args: argparse.Namespace) -> tuple[int, float]:
    """(epochs, lr) for --tune, defaults filled in; LearningError for bad values or use without --tune."""
    if not args.tune:
        if args.tune_epochs is not None or args.tune_lr is not None:
            raise LearningError("--tune-epochs and --tune-lr need --tune")
        return 0, 0.0
    epochs = 3 if args.tune_epochs is None else args.tune_epochs
    lr = 1e-5 if args.tune_lr is None else args.tune_lr
    if epochs < 1:
        raise LearningError(f"--tune-epochs {epochs}: must be a positive integer")
    if not (math.isfinite(lr) and lr > 0):
        raise LearningError(f"--tune-lr {lr}: must be a positive number")
    return epochs, lr


def parse_patch(spec: str) -> int | None:
    if spec == "full":
        return None
    if not spec.isdigit() or int(spec) < 16:
        raise LearningError(f"--patch {spec!r}: use 'full' or a size of at least 16")
    return int(spec)


def keep_freed_memory() -> None:
    """Ask glibc to reuse freed memory instead of returning it to the OS at once: the backbone allocates
    and frees tens of MB per batch, and fresh pages cost page faults, which on a busy VM took up to
    two thirds of a batch's time. Process-wide, so done by this command only, never on library import."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap top
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks up to 32 MiB from the (reused) heap
    except (OSError, AttributeError):
        pass


def run(args: argparse.Namespace) -> int:
    """Parse and check the arguments (errors before any work), then ``learning.fitting.fit_dpl``."""
    device = resolve_device(args.device)
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rounds < 1 or args.patience < 1 or args.batch_size < 1:
        raise LearningError("--rounds, --patience and --batch-size must be positive")
    tune_epochs, tune_lr = check_tune_args(args)
    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise LearningError(f"--out {out} is a folder")
    parse_backbone_spec(args.backbone, "--backbone")
    parse_patch(args.patch)
    log = None if args.quiet else (lambda *a: print(*a, file=sys.stderr))

    rep = fit_dpl(args.data, out, val=args.val, net=args.net, backbone=args.backbone,
                  cache=None if args.cache == "none" else Path(args.cache) if args.cache else "default",
                  patch=args.patch,
                  rounds=args.rounds, patience=args.patience, batch_size=args.batch_size, seed=args.seed,
                  device=device, tune_epochs=tune_epochs, tune_lr=tune_lr if args.tune else 1e-5,
                  progress=not args.quiet, log=log, start=args.start, prior=args.prior)
    print(f"train 2AFC {rep.train_2afc:.4f}  val 2AFC {rep.val_2afc:.4f} "
          f"(uniform weights {rep.val_2afc_uniform:.4f})  best round {rep.rounds}")
    if rep.tune is not None:
        tr = rep.tune
        print(f"tune: train 2AFC {tr.train_2afc_before:.4f} -> {tr.train_2afc:.4f}  val 2AFC "
              f"{tr.val_2afc_before:.4f} -> {tr.val_2afc:.4f}  best epoch {tr.best_epoch} of "
              f"{tr.epochs_run} ({tr.seconds_per_epoch:.1f}s/epoch)")
    print(f"features {rep.features_seconds:.1f}s, fit {rep.fit_seconds:.1f}s"
          + (f", tune {rep.tune_seconds:.1f}s" if rep.tune_seconds is not None else "") + f"; wrote {out}")
    return 0
