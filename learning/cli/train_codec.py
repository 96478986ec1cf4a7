"""``python -m learning train-codec``: train or fine-tune a CompressAI codec, rate + λ·distortion, on any
device (DDP via torchrun: NCCL on CUDA, gloo on CPU)."""

from __future__ import annotations

import argparse
import json
import os

import torch

from learning.architectures import ARCHS
from learning.device import add_device_argument, resolve_device
from learning.training import train_codec
from learning.training.loop import MEMORY_FORMATS, TrainConfig
from learning.training.schedule import SCHEDULES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-codec",
        help="train or fine-tune a learned codec (CompressAI) with MSE, MS-SSIM or a DPL",
        description=__doc__,
    )
    p.add_argument("--arch", choices=ARCHS, help="architecture (may be left out with --init)")
    p.add_argument("--N", type=int, help="channels (default 128, or as --init fixes them)")
    p.add_argument("--M", type=int, help="latent channels (default 192, or as --init fixes them)")
    p.add_argument("--init", help="start from zoo:ARCH:QUALITY[:mse|ms-ssim] (CompressAI's pretrained "
                                  "weights) or a train-codec checkpoint PATH (weights only)")
    p.add_argument("--data", required=True, help="directory of training images")
    p.add_argument("--val", help="directory of held-out validation images")
    p.add_argument("--loss", default="mse", help="mse | ms-ssim | dpl:FILE, or a weighted sum such "
                   "as dpl:FILE+0.002*mse")
    p.add_argument("--lmbda", type=float, required=True, help="λ in bpp + λ·D (mse: D = 255²·MSE); "
                                                                  "with --target-bpp, the starting λ")
    p.add_argument("--target-bpp", type=float, metavar="BPP",
                   help="steer λ during training so the training rate meets BPP (compare losses at equal "
                        "rate; learning/training/steered_lambda.py)")
    p.add_argument("--saliency", help="directory of saliency maps (PNG, same stem as the images)")
    p.add_argument("--saliency-alpha", type=float, default=3.0, help="weight = 1 + α·saliency, mean 1")
    p.add_argument("--dpl-backbone", help="override the DPL backbone: PATH or random:SEED")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch", type=int, default=8, help="global batch (split across DDP processes)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--epochs", type=int, help="passes over the training images (one crop each)")
    g.add_argument("--steps", type=int)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--aux-lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", default="none", choices=SCHEDULES,
                   help="cosine: to 1%% of --lr over the run; plateau: halve after 2 validations "
                        "without improvement")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-crop", type=int, default=256, help="centre crop of validation images (0 = whole)")
    p.add_argument("--val-every", type=int, default=1000, help="validate (and checkpoint) every N steps")
    p.add_argument("--val-metrics", default="",
                   help="extra validation metrics from the registry, e.g. lpips-alex:PATH,dpl:dpl.pt")
    p.add_argument("--log-every", type=int, default=50, help="training record every N steps")
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (0 = --val-every)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (0 = in-process)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = torch default)")
    p.add_argument("--memory-format", choices=tuple(MEMORY_FORMATS), default="channels_last",
                   help="tensor layout of the model and batches: channels_last (default: faster convolutions "
                        "on CPU and GPU, the same losses) or contiguous (CompressAI's own)")
    add_device_argument(p, amp=True)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint at --out (up to --steps/--epochs in all; --lr/--aux-lr apply "
        "from here on, so a later stage can decay them)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True,
                   help="checkpoint path (best validation: OUT.best.pt; log beside it: OUT.log.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)  # an unknown or absent device fails before any work
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    fields = TrainConfig.__dataclass_fields__
    options = {k: v for k, v in vars(args).items() if k in fields}
    result = train_codec(**{**options, "device": device}, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result, indent=1, default=float))
    return 0
