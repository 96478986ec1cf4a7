"""The DCC 2018 Kodak table, three ways, scored as the reference scored it (``reference_metrics.py``).

Per image, against the standard JPEG (Pillow q50, the reference's ``original.save(quality=50)``):

(a) the reference method (``reference-model-6`` by default) at the log's threshold, beside the log's own
    composite column;
(b) the same at threshold 0: the composite no larger than the standard file (the fair comparison);
(c) our methods (``ours-block-composite``, ``ours-dct-prune``) at the standard file's size ± 1 %.

Every file is scored by ``ReferenceScorer``: the six VQMT metrics read as published (the reference's
swapped call) and correctly, and PSNR-S over the salient regions of ``reference_metrics.REGIONS``.

The log's threshold: its composites are 0.93–1.97 % larger than standard and ``combine_images.py`` takes
an integer ``-threshold_pct``; 1 would exclude most of its rows, so the log was made with 2.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from learning.saliency.jpeg import saliency_jpeg
from learning.saliency.reference import reference_jpeg, saliency_u8
from learning.saliency.reference_log import METRICS, LogRow
from learning.saliency.reference_metrics import PSNR_S_REGION, REGIONS, ReferenceScorer

LOG_THRESHOLD_PCT = 2.0
OURS = ("ours-block-composite", "ours-dct-prune")


@dataclass
class Entry:
    """One file of one image: how it was made and its scores (``ReferenceScorer.score`` keys)."""

    stem: str
    method: str
    way: str  # "standard", "a", "b", "c"
    final_quality: float
    size_excess: float  # bytes / standard bytes − 1
    scores: dict[str, float]
    files: dict[str, bytes] = field(default_factory=dict, repr=False)


def evaluate_image(image: Image.Image, png: bytes, saliency: np.ndarray, stem: str, model: int = 6,
                   threshold_pct: float = LOG_THRESHOLD_PCT, jpeg_quality: int = 50,
                   ours: tuple[str, ...] = OURS) -> list[Entry]:
    """The standard JPEG, the reference at ``threshold_pct`` and at 0, and ``ours``, all scored."""
    sal8 = saliency_u8(saliency, image.size)
    scorer = ReferenceScorer(png, sal8)
    ref_a = reference_jpeg(image, sal8, model, threshold_pct, jpeg_quality)
    ref_b = reference_jpeg(image, sal8, model, 0.0, jpeg_quality)
    std = ref_a.standard
    out = [Entry(stem, f"standard-q{jpeg_quality}", "standard", jpeg_quality, 0.0, scorer.score(std),
                 {"standard": std})]
    for way, ref in (("a", ref_a), ("b", ref_b)):
        out.append(Entry(stem, f"{ref.method}@{ref.threshold_pct:g}%", way, ref.final_quality,
                         ref.size_excess, scorer.score(ref.data), {way: ref.data}))
    sal_f = sal8.astype(np.float32) / 255.0
    for method in ours:
        res = saliency_jpeg(image, sal_f, len(std), method=method)
        out.append(Entry(stem, method, "c", res.final_quality, res.size_error, scorer.score(res.data),
                         {method: res.data}))
    return out


def _fmt(metric: str, v: float) -> str:
    return f"{v:.4f}" if metric in ("SSIM", "MS-SSIM", "VIFP") else f"{v:.3f}"


def _sfmt(metric: str, v: float) -> str:
    return f"{v:+.4f}" if metric in ("SSIM", "MS-SSIM", "VIFP") else f"{v:+.3f}"


def metric_check(entries: list[Entry], log: dict[str, LogRow]) -> dict[str, dict[str, float]]:
    """Per metric, our standard-JPEG value (published reading) − the log's, per image."""
    out: dict[str, dict[str, float]] = {m: {} for m in METRICS}
    for e in entries:
        if e.way == "standard" and e.stem in log:
            for m in METRICS:
                out[m][e.stem] = e.scores[f"published:{m}"] - log[e.stem].jpeg[m]
    return out


def _by(entries: list[Entry], way: str, method: str | None = None) -> dict[str, Entry]:
    return {e.stem: e for e in entries if e.way == way and (method is None or e.method == method)}


def format_report(entries: list[Entry], log: dict[str, LogRow], map_desc: str) -> str:
    """The three tables, the metric check against the log and the PSNR-S sensitivity, as text."""
    std = _by(entries, "standard")
    a, b = _by(entries, "a"), _by(entries, "b")
    stems = sorted(std)
    a_name = next(iter(a.values())).method if a else "?"
    b_name = next(iter(b.values())).method if b else "?"
    lines = [f"DCC 2018 Kodak table on {len(stems)} images. Saliency map: {map_desc}.",
             "Scoring: ffmpeg yuv420p luma (PyAV) + VQMT metric definitions; 'published' = the reference's "
             "swapped width/height reading, 'correct' = the plane as it is.",
             f"PSNR-S = PSNR of the correctly read luma over the salient region '{PSNR_S_REGION}' "
             "(pixels whose 8-bit saliency ≥ the map's 75th percentile).", ""]

    check = metric_check(entries, log)
    if any(check[m] for m in METRICS):
        lines += ["Metric check, standard JPEG q50 (ours, published reading) − the log's standard column:",
                  "| metric | max |Δ| | mean Δ | images |", "|---|---|---|---|"]
        for m in METRICS:
            d = np.array(list(check[m].values()))
            lines.append(f"| {m} | {np.abs(d).max():.4f} | {d.mean():+.4f} | {len(d)} |")
        lines.append("")

    lines += [f"(a) {a_name} (the log's threshold), per image; Δ = composite − standard, "
              "published reading; [log] = the reference's own log",
              "| image | bytes std (ours/log) | excess % (ours/log) | q (ours/log) | ΔPSNR (ours/log) | "
              "ΔSSIM (ours/log) | ΔPSNR-HVS-M (ours/log) | ΔPSNR-S |", "|---|---|---|---|---|---|---|---|"]
    for s in stems:
        if s not in a:
            continue
        e, st, lg = a[s], std[s], log.get(s)

        def d(m: str, e=e, st=st) -> float:
            return e.scores[f"published:{m}"] - st.scores[f"published:{m}"]

        def ld(m: str, lg=lg) -> str:
            return _sfmt(m, lg.composite[m] - lg.jpeg[m]) if lg else "—"

        lines.append(
            f"| {s} | {int(st.scores['bytes'])}/{lg.jpeg_bytes if lg else '—'} | "
            f"{100 * e.size_excess:+.2f}/{f'{100 * lg.size_excess:+.2f}' if lg else '—'} | "
            f"{e.final_quality:g}/{lg.composite_quality if lg else '—'} | "
            f"{_sfmt('PSNR', d('PSNR'))}/{ld('PSNR')} | "
            f"{_sfmt('SSIM', d('SSIM'))}/{ld('SSIM')} | {_sfmt('PSNR-HVS-M', d('PSNR-HVS-M'))}/"
            f"{ld('PSNR-HVS-M')} | {e.scores['PSNR-S'] - st.scores['PSNR-S']:+.3f} |")
    lines.append("")

    lines += [f"(b) {b_name} (no larger than standard), per image; Δ = composite − standard",
              "| image | excess % | q | ΔPSNR | ΔPSNR-S | ΔSSIM (correct) | ΔMS-SSIM (correct) | "
              "ΔPSNR-HVS-M (correct) |", "|---|---|---|---|---|---|---|---|"]
    for s in stems:
        if s not in b:
            continue
        e, st = b[s], std[s]

        def dc(m: str, e=e, st=st) -> float:
            return e.scores[f"correct:{m}"] - st.scores[f"correct:{m}"]

        lines.append(f"| {s} | {100 * e.size_excess:+.2f} | {e.final_quality:g} | {dc('PSNR'):+.3f} | "
                     f"{e.scores['PSNR-S'] - st.scores['PSNR-S']:+.3f} | {dc('SSIM'):+.4f} | "
                     f"{dc('MS-SSIM'):+.4f} | {dc('PSNR-HVS-M'):+.3f} |")
    lines.append("")

    methods = [("standard", None, "standard JPEG q50")] + [("a", None, f"(a) {a_name}"),
                                                           ("b", None, f"(b) {b_name}")]
    methods += [("c", m, f"(c) {m}") for m in sorted({e.method for e in entries if e.way == "c"})]
    for reading in ("published", "correct"):
        lines += [f"Means over {len(stems)} images, {reading} reading:",
                  "| row | bytes | excess % | PSNR-S | " + " | ".join(METRICS) + " |",
                  "|---|---|---|---|" + "---|" * len(METRICS)]
        for way, meth, label in methods:
            es = list(_by(entries, way, meth).values())
            if not es:
                continue
            vals = [np.mean([e.scores[f"{reading}:{m}"] for e in es]) for m in METRICS]
            lines.append(f"| {label} | {np.mean([e.scores['bytes'] for e in es]):.0f} | "
                         f"{100 * np.mean([e.size_excess for e in es]):+.2f} | "
                         f"{np.mean([e.scores['PSNR-S'] for e in es]):.3f} | "
                         + " | ".join(_fmt(m, v) for m, v in zip(METRICS, vals)) + " |")
        if reading == "published":
            rows = [log[s] for s in stems if s in log]
            if rows:
                for label, side in (("log: standard JPEG", "jpeg"),
                                    ("log: composite (model 6)", "composite")):
                    vals = [np.mean([getattr(r, side)[m] for r in rows]) for m in METRICS]
                    nbytes = np.mean([r.jpeg_bytes if side == "jpeg" else r.composite_bytes for r in rows])
                    exc = 0.0 if side == "jpeg" else 100 * np.mean([r.size_excess for r in rows])
                    lines.append(f"| {label} | {nbytes:.0f} | {exc:+.2f} | — | "
                                 + " | ".join(_fmt(m, v) for m, v in zip(METRICS, vals)) + " |")
        lines.append("")

    lines += ["PSNR-S sensitivity: mean ΔPSNR-S (method − standard, dB) per salient-region definition:",
              "| row | " + " | ".join(REGIONS) + " |", "|---|" + "---|" * len(REGIONS)]
    for way, meth, label in methods[1:]:
        es = _by(entries, way, meth)
        vals = [np.mean([es[s].scores[f"PSNR-S:{r}"] - std[s].scores[f"PSNR-S:{r}"] for s in es])
                for r in REGIONS]
        lines.append(f"| {label} | " + " | ".join(f"{v:+.3f}" for v in vals) + " |")
    return "\n".join(lines)


def write_csv(entries: list[Entry], log: dict[str, LogRow], path: Path) -> None:
    """One row per image and file: how it was made, every score, and the log's values where it has them."""
    keys = sorted({k for e in entries for k in e.scores})
    cols = ["image", "method", "way", "final_quality", "size_excess", *keys,
            *[f"log:{m}" for m in METRICS], "log:bytes", "log:quality"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for e in entries:
            lg = log.get(e.stem)
            side = {"standard": "jpeg", "a": "composite"}.get(e.way) if lg else None
            logv = [getattr(lg, side)[m] for m in METRICS] if side else [""] * len(METRICS)
            extra = ([lg.jpeg_bytes, lg.jpeg_quality] if side == "jpeg"
                     else [lg.composite_bytes, lg.composite_quality] if side else ["", ""])
            w.writerow([e.stem, e.method, e.way, e.final_quality, f"{e.size_excess:.6f}",
                        *[f"{e.scores[k]:.6f}" for k in keys], *logv, *extra])


def plot(entries: list[Entry], log: dict[str, LogRow], path_png: Path) -> None:
    """Per image ΔPSNR (published) and ΔPSNR-S against the standard JPEG, every method; PNG and SVG."""
    std = _by(entries, "standard")
    stems = sorted(std)
    series = [(f"(a) {e.method}", _by(entries, "a")) for e in list(_by(entries, "a").values())[:1]]
    series += [(f"(b) {e.method}", _by(entries, "b")) for e in list(_by(entries, "b").values())[:1]]
    ours = sorted({e.method for e in entries if e.way == "c"})
    series += [(f"(c) {m}", _by(entries, "c", m)) for m in ours]
    # a Figure of its own, not pyplot: the site imports this module (``overlay``) and keeps no pyplot state
    fig = Figure(figsize=(14, 7))
    axes = fig.subplots(2, 1, sharex=True)
    x = np.arange(len(stems))
    width = 0.8 / (len(series) + 1)
    for j, key in enumerate(("published:PSNR", "PSNR-S")):
        ax = axes[j]
        for i, (label, es) in enumerate(series):
            vals = [es[s].scores[key] - std[s].scores[key] if s in es else np.nan for s in stems]
            ax.bar(x + i * width, vals, width, label=label)
        if key == "published:PSNR":
            ax.bar(x + len(series) * width,
                   [log[s].composite["PSNR"] - log[s].jpeg["PSNR"] if s in log else np.nan for s in stems],
                   width, label="log: composite (model 6)", color="k")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_ylabel(("ΔPSNR" if key == "published:PSNR" else f"ΔPSNR-S ({PSNR_S_REGION})") + " vs q50, dB")
        ax.legend(fontsize=7, ncol=3)
    axes[1].set_xticks(x + 0.4, stems, rotation=60, fontsize=7)
    fig.tight_layout()
    fig.savefig(path_png, dpi=90)
    fig.savefig(path_png.with_suffix(".svg"))


def overlay(image: Image.Image, saliency: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The image blended with a colour-mapped saliency map (matplotlib 'jet')."""
    heat = (colormaps["jet"](saliency)[..., :3] * 255).astype(np.float64)
    base = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip((1 - alpha) * base + alpha * heat, 0, 255).astype(np.uint8))
