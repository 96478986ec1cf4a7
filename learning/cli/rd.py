"""``python -m learning rd``: R–D curves of codecs on a set of images, with BD-rates against an anchor.

Codecs: classical names (jpeg, jpeg2000, webp, avif, heic, jxl, ...) are encoded at each --bpp target by
rate control. A learned codec has no quality knob, so each checkpoint is one rate point; one ``ckpt:``
entry is one curve of one or more checkpoints (one per λ, same architecture and loss), joined with ``+``
or given as a glob: ``ckpt:a.pt+b.pt+c.pt``, ``ckpt:runs/mse_*.pt`` (quote globs in a shell). Each
checkpoint is encoded once per image at its native rate (real compress/decompress bitstreams); its rows
name the checkpoint and leave target_bpp blank. Give at least two checkpoints for a learned BD-rate.

Writes into --out: ``rd.csv`` (image, codec, checkpoint, target and achieved bpp, each metric, note),
``rd_<metric>.png/.svg`` (mean over images; dpl:FILE → ``rd_dpl_<file stem>``), ``bd_rate.csv`` and
``bd_rate.md`` (BD-rate in % against the anchor, pchip in log-rate over the quality range both curves
cover, which the tables also give; MS-SSIM/SSIM in dB, lower-is-better metrics negated).
``--from-csv A.csv B.csv`` rebuilds plots and tables from earlier runs without encoding (later files
replace earlier rows of the same image, codec and target or checkpoint).

``--device`` runs the deep metrics (``dpl:FILE``, ``lpips-*``) and the checkpoints' transforms there (each
checkpoint encodes and decodes on that one device; the entropy coder always runs on the CPU).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from learning.device import add_device_argument, resolve_device
from learning.errors import LearningError
from learning.metrics import get_metric
from learning.rd.evaluate import resolve_curves, run_rd
from learning.rd.report import read_csv, write_report
from learning.training.data import list_images


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("rd", help="rate-distortion curves and BD-rates", description=__doc__)
    p.add_argument("--images", help="directory of reference images")
    p.add_argument(
        "--codecs",
        help="comma list: jpeg,jpeg2000,webp,avif,heic,jxl and learned curves ckpt:PATH, "
        "ckpt:A.pt+B.pt+C.pt or 'ckpt:DIR/*.pt' (one curve per ckpt: entry, one point per checkpoint)",
    )
    p.add_argument(
        "--bpp", default="0.1,0.2,0.4,0.8", help="comma list of bpp targets (classical codecs only)"
    )
    p.add_argument("--metrics", default="psnr,ms-ssim", help="comma list: psnr, ms-ssim, dpl:FILE, ...")
    p.add_argument("--anchor", default="jpeg", help="BD-rate anchor codec")
    p.add_argument("--bd-method", default="pchip", choices=["pchip", "cubic"])
    p.add_argument("--limit", type=int, help="use only the first N images (sorted by name)")
    p.add_argument("--from-csv", nargs="+", metavar="CSV", help="re-plot earlier rd.csv files, no encoding")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="output directory")
    add_device_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)  # an unknown or absent device fails before anything is written
    return _rd(args, device)


def _rd(args: argparse.Namespace, device: torch.device) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise LearningError(f"--out {str(out)!r} exists and is not a directory")
    if args.from_csv:
        rows, metrics = read_csv(args.from_csv)
        higher = {m: get_metric(m).higher_is_better for m in metrics}
    else:
        if not args.images or not args.codecs:
            raise LearningError("--images and --codecs are required (or --from-csv)")
        codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
        try:
            bpps = sorted(float(b) for b in args.bpp.split(",") if b.strip())
        except ValueError as exc:
            raise LearningError(f"--bpp must be a comma list of numbers, got {args.bpp!r}") from exc
        if not codecs or not metrics or not bpps or any(not (b > 0 and math.isfinite(b)) for b in bpps):
            raise LearningError("--codecs, --metrics and positive --bpp targets are required")
        # names, availability, checkpoints: all checked before any work
        curves = resolve_curves(codecs, device)
        higher = {m: get_metric(m).higher_is_better for m in metrics}
        images = list_images(args.images)
        if args.limit is not None:
            if args.limit <= 0:
                raise LearningError("--limit must be positive")
            images = images[: args.limit]
        rows = run_rd(images, curves, bpps, metrics, progress=not args.no_progress, device=device)
    out.mkdir(parents=True, exist_ok=True)
    md = write_report(rows, metrics, higher, args.anchor, args.bd_method, out)
    print("\n".join(md))
    unreached = [r for r in rows if r.achieved_bpp is None]
    if unreached:
        print(f"{len(unreached)} targets unreachable (see the note column of rd.csv)")
    print(f"wrote {out / 'rd.csv'}, plots rd_*.png/svg, bd_rate.csv/md")
    return 0
