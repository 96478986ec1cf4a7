"""``python -m learning score``: 2AFC agreement of metrics with human judgments, per set.

For each set and metric: the 2AFC score ``(d0<d1)(1−h) + (d1<d0)h + ½·tie`` averaged over triplets, a
percentile bootstrap 95% interval (resampling triplets), and the human ceiling where judge counts exist
(see ``learning.twoafc``). ``--plot`` draws bars with the intervals (PNG and SVG). ``--device`` runs the
deep metrics (``lpips-*``, ``dpl:FILE``) there; classical metrics run on the CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from learning.cli.fit import parse_patch
from learning.device import add_device_argument, resolve_device
from learning.errors import LearningError
from learning.scoring import score_metrics


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("score", help="2AFC scores of metrics against judgments", description=__doc__)
    p.add_argument("--data", nargs="+", required=True, help="2AFC set folders (BAPPS layout)")
    p.add_argument("--metrics", default="psnr,ssim,ms-ssim,lpips-alex",
                   help="comma-separated metric names (psnr, ssim, ms-ssim, lpips-alex, dpl:FILE, ...)")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--plot", help="write a bar chart here (.png; an .svg is written beside it)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: no interval)")
    p.add_argument("--patch", default="full", help="'full' or a random square crop size (seeded)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    add_device_argument(p)
    p.set_defaults(func=run)


def plot(results: list[dict], path: Path) -> list[Path]:
    sets = list(dict.fromkeys(r["set"] for r in results))
    metrics = list(dict.fromkeys(r["metric"] for r in results))
    # a Figure of its own, not pyplot: no GUI backend and no global figure state in a command
    fig = Figure(figsize=(max(6, 1.2 * len(metrics) * len(sets)), 4))
    ax = fig.subplots()
    width = 0.8 / len(metrics)
    x = np.arange(len(sets))
    for j, m in enumerate(metrics):
        rows = [next(r for r in results if r["set"] == s and r["metric"] == m) for s in sets]
        vals = np.array([r["score"] for r in rows])
        lo = np.array([r["ci"][0] if r["ci"] else r["score"] for r in rows])
        hi = np.array([r["ci"][1] if r["ci"] else r["score"] for r in rows])
        ax.bar(x + j * width, vals, width, label=m,
               yerr=[np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)], capsize=3)
    for i, s in enumerate(sets):
        ceil = next((r["human_ceiling"] for r in results if r["set"] == s and r["human_ceiling"]), None)
        if ceil is not None:
            ax.hlines(ceil, i - 0.1, i + 0.8, colors="k", linestyles="dashed",
                      label="human ceiling" if i == 0 else None)
    ax.set_xticks(x + 0.4 - width / 2)
    ax.set_xticklabels(sets, rotation=15)
    ax.set_ylabel("2AFC score (95% bootstrap CI)")
    ax.set_ylim(0.4, 1.0)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    png = path.with_suffix(".png")
    fig.savefig(png, dpi=120)
    fig.savefig(png.with_suffix(".svg"))
    return [png, png.with_suffix(".svg")]


def run(args: argparse.Namespace) -> int:
    """Parse and check the arguments (errors before any work), ``learning.scoring.score_metrics``, then
    the table, ``--json`` and ``--plot``."""
    device = resolve_device(args.device)  # an unknown or absent device fails before any work
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if not names:
        raise LearningError("--metrics is empty")
    if args.bootstrap < 0 or args.batch_size < 1:
        raise LearningError("--bootstrap must be ≥ 0 and --batch-size ≥ 1")
    if args.plot and Path(args.plot).suffix.lower() not in (".png", ".svg", ""):
        raise LearningError("--plot must end in .png")
    patch = parse_patch(args.patch)
    header = [f"{'set':24} {'metric':28} {'2AFC':>7}  {'95% CI':>15}  {'ceiling':>7}  n"]

    def print_row(row: dict) -> None:
        while header:  # printed with the first row: nothing on stdout when the input is refused
            print(header.pop())
        ci, ceiling = row["ci"], row["human_ceiling"]
        ci_txt = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "-"
        c_txt = f"{ceiling:.4f}" if ceiling is not None else "-"
        print(f"{row['set'][:24]:24} {row['metric'][:28]:28} {row['score']:7.4f}  {ci_txt:>15}  {c_txt:>7}  "
              f"{row['n']}")

    results = score_metrics(args.data, names, patch=patch, bootstrap=args.bootstrap,
                            batch_size=args.batch_size, seed=args.seed, device=device, on_row=print_row)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"results": results, "bootstrap": args.bootstrap}, indent=1))
        print(f"wrote {args.json}")
    if args.plot:
        files = plot(results, Path(args.plot))
        print("wrote " + ", ".join(map(str, files)))
    return 0
