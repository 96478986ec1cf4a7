"""``python -m learning train-codec``: train a CompressAI codec, rate + λ·distortion (DDP via torchrun)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    from learning.training.models import ARCHS

    p = subparsers.add_parser(
        "train-codec",
        help="train a learned codec (CompressAI) with MSE, MS-SSIM or a DPL",
        description=__doc__,
    )
    p.add_argument("--arch", required=True, choices=ARCHS)
    p.add_argument("--N", type=int, default=128)
    p.add_argument("--M", type=int, default=192)
    p.add_argument("--data", required=True, help="directory of training images")
    p.add_argument("--val", help="directory of held-out validation images")
    p.add_argument("--loss", default="mse", help="mse | ms-ssim | dpl:FILE")
    p.add_argument("--lmbda", type=float, required=True, help="λ in bpp + λ·D (mse: D = 255²·MSE)")
    p.add_argument("--saliency", help="directory of saliency maps (PNG, same stem as the images)")
    p.add_argument("--saliency-alpha", type=float, default=3.0, help="weight = 1 + α·saliency, mean 1")
    p.add_argument("--dpl-backbone", help="override the DPL backbone: PATH or random:SEED")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch", type=int, default=8, help="global batch (split across DDP processes)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--epochs", type=int)
    g.add_argument("--steps", type=int)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--aux-lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-crop", type=int, default=256, help="centre crop of validation images (0 = whole)")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs (and at the end)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = torch default)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint at --out (up to --steps/--epochs in all; --lr/--aux-lr apply "
        "from here on, so a later stage can decay them)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="checkpoint path (log beside it: OUT.log.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from learning.training.loop import TrainConfig, train

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        arch=args.arch,
        data=args.data,
        out=args.out,
        N=args.N,
        M=args.M,
        val=args.val,
        loss=args.loss,
        lmbda=args.lmbda,
        saliency=args.saliency,
        saliency_alpha=args.saliency_alpha,
        dpl_backbone=args.dpl_backbone,
        crop=args.crop,
        batch=args.batch,
        epochs=args.epochs,
        steps=args.steps,
        lr=args.lr,
        aux_lr=args.aux_lr,
        clip=args.clip,
        seed=args.seed,
        val_crop=args.val_crop,
        val_every=args.val_every,
        resume=args.resume,
        progress=not args.no_progress,
    )
    result = train(cfg)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result, indent=1, default=float))
    return 0
