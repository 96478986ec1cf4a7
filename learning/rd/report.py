"""R–D outputs: the CSV, one plot per metric, and the BD-rate table (CSV + Markdown)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from learning.errors import LearningError
from learning.rd.bdrate import bd_rate
from learning.rd.evaluate import Row, curves
from learning.rd.plots import plot_metric


def metric_slug(metric: str) -> str:
    if metric.startswith("dpl:"):
        return "dpl_" + Path(metric[4:]).stem
    return metric.replace(":", "_").replace("/", "_")


def bd_quality(metric: str, values, higher_is_better: bool) -> np.ndarray:
    """Quality axis for BD-rate: (MS-)SSIM in dB, lower-is-better metrics negated."""
    v = np.asarray(values, float)
    if metric in ("ms-ssim", "ssim"):
        return -10 * np.log10(np.clip(1 - v, 1e-12, None))
    return v if higher_is_better else -v


def write_csv(rows: list[Row], metrics: list[str], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        head = ["image", "codec", "checkpoint", "target_bpp", "achieved_bpp", "quality", "n_encodes"]
        w.writerow([*head, *metrics, "note"])
        for r in rows:
            w.writerow(
                [
                    r.image,
                    r.codec,
                    r.checkpoint,
                    "" if r.target_bpp is None else r.target_bpp,
                    "" if r.achieved_bpp is None else f"{r.achieved_bpp:.5f}",
                    "" if r.quality is None else r.quality,
                    r.n_encodes,
                    *[f"{r.metrics[m]:.6f}" if m in r.metrics else "" for m in metrics],
                    r.note,
                ]
            )


def read_csv(paths: list[str]) -> tuple[list[Row], list[str]]:
    """Rows of earlier runs; a later file's rows replace earlier ones for the same (image, codec, target)
    or, for learned points, the same (image, codec, checkpoint)."""
    merged: dict[tuple, Row] = {}
    metrics: list[str] = []
    for p in paths:
        try:
            with open(p, newline="") as f:
                reader = csv.DictReader(f)
                fields = reader.fieldnames or []
                ms = fields[fields.index("n_encodes") + 1 : fields.index("note")]
                for d in reader:
                    t = float(d["target_bpp"]) if d["target_bpp"] else None
                    row = Row(
                        d["image"],
                        d["codec"],
                        t,
                        float(d["achieved_bpp"]) if d["achieved_bpp"] else None,
                        float(d["quality"]) if d["quality"] else None,
                        int(d["n_encodes"]),
                        {m: float(d[m]) for m in ms if d.get(m)},
                        d["note"],
                        d.get("checkpoint") or "",  # absent in CSVs from before learned curves
                    )
                    point = row.checkpoint or (row.achieved_bpp if t is None else None)
                    key = (row.image, row.codec, t, point)
                    merged[key] = row
        except (OSError, KeyError, ValueError) as exc:
            raise LearningError(f"cannot read R–D CSV {p!r} ({exc})") from exc
        metrics += [m for m in ms if m not in metrics]
    return list(merged.values()), metrics


def write_report(
    rows: list[Row], metrics: list[str], higher: dict[str, bool], anchor: str, method: str, out: Path
) -> list[str]:
    """Write rd.csv, rd_<metric>.png/svg, bd_rate.csv/md into ``out``; return the Markdown lines.

    BD-rates integrate over the quality range both curves cover; that range (in the BD quality unit:
    dB for PSNR and MS-SSIM, negated for lower-is-better metrics) goes into ``overlap_<metric>``.
    """
    n_images = len({r.image for r in rows})
    write_csv(rows, metrics, out / "rd.csv")
    table: dict[str, dict[str, str]] = {}
    overlap: dict[str, dict[str, str]] = {}
    for m in metrics:
        cv = curves(rows, m)
        slug = metric_slug(m)
        plot_metric(cv, m, higher[m], out, title=f"R–D on {n_images} images: {slug}", slug=slug)
        if anchor not in cv:
            continue
        ra, da = cv[anchor]
        qa = bd_quality(m, da, higher[m])
        for label, (r, d) in cv.items():
            if label == anchor:
                continue
            qt = bd_quality(m, d, higher[m])
            try:
                value = bd_rate(ra, qa, r, qt, method=method)
                table.setdefault(label, {})[m] = f"{value:+.1f}"
                lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
                overlap.setdefault(label, {})[m] = f"{lo:.4g}..{hi:.4g}"
            except LearningError as exc:
                table.setdefault(label, {})[m] = f"n/a ({exc})"
    with open(out / "bd_rate.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "codec",
                *[f"bd_rate_{metric_slug(m)}_pct" for m in metrics],
                *[f"overlap_{metric_slug(m)}" for m in metrics],
            ]
        )
        for label, vals in table.items():
            ov = overlap.get(label, {})
            w.writerow([label, *[vals.get(m, "") for m in metrics], *[ov.get(m, "") for m in metrics]])
    md = [
        f"BD-rate (%) against {anchor} ({method}, {n_images} images; negative = fewer bits)",
        "",
        "| codec | " + " | ".join(metric_slug(m) for m in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    md += [
        f"| {label} | " + " | ".join(vals.get(m, "") for m in metrics) + " |" for label, vals in table.items()
    ]
    md += [
        "",
        "Quality range each BD-rate integrates over (both curves cover it; PSNR in dB, MS-SSIM as "
        "-10·log10(1-MS-SSIM) dB, lower-is-better metrics negated):",
        "",
        "| codec | " + " | ".join(metric_slug(m) for m in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for label in table:
        md.append(f"| {label} | " + " | ".join(overlap.get(label, {}).get(m, "") for m in metrics) + " |")
    (out / "bd_rate.md").write_text("\n".join(md) + "\n")
    return md
