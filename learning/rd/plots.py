"""R–D plots: one figure per metric, every codec as a curve, saved as PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_metric(
    curves: dict, metric: str, higher_is_better: bool, out_dir: Path, title: str = "", slug: str = ""
) -> list[Path]:
    """Write ``rd_<slug>.png`` and ``.svg`` (slug defaults to the metric name made file-safe)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    for label, (bpp, values) in curves.items():
        style = "--" if label.startswith("learned:") else "-"
        ax.plot(bpp, values, style, marker="o", ms=4, label=label)
    ax.set_xlabel("bits per pixel (from real bytes)")
    ax.set_ylabel(f"{metric} ({'higher' if higher_is_better else 'lower'} is better)")
    ax.set_title(title or f"Rate–distortion: {metric}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    stem = "rd_" + (slug or metric.replace(":", "_").replace("/", "_").replace(".", "_"))
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths
