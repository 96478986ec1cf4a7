"""Dashboard figures (matplotlib Figure objects, no pyplot) drawn from a study's ``Summary`` (the figures the
page shows, computed once: ``summary.get_summary``), rendered to PNG or SVG bytes by ``render``."""

from __future__ import annotations

import io
import textwrap
from collections import defaultdict
from datetime import timedelta

from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from webapp.lab.summary import Summary

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


def _subplots(nrows: int, ncols: int, figsize: tuple[float, float]):
    """A Figure without pyplot (no global state: safe in threaded servers)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols)


def _empty(fig: Figure, ax, text: str) -> Figure:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def timeline(summary: Summary) -> Figure:
    fig, ax = _subplots(1, 1, figsize=(7, 3))
    rows = summary.timeline
    if not rows:
        return _empty(fig, ax, "no judgments yet")
    t = [r[0] for r in rows]
    total, cum = 0, []
    for _, n in rows:
        total += n
        cum.append(total)
    ax.plot(t, cum, "o-", drawstyle="steps-post", ms=3)
    if len(t) == 1:
        ax.set_xlim(t[0] - timedelta(minutes=5), t[0] + timedelta(minutes=5))
    ax.set_ylim(0, total * 1.05)
    ax.set_ylabel("judgments (cumulative)")
    ax.set_title("Judgments over time")
    fig.autofmt_xdate()
    return fig


def coverage(summary: Summary) -> Figure:
    fig, ax = _subplots(1, 1, figsize=(7, 3))
    rows = summary.coverage
    if not rows:
        return _empty(fig, ax, "no trials")
    x = range(len(rows))
    ax.bar(x, [r["n"] for r in rows], width=1.0, label="judgments")
    ax.step(x, [r["target"] for r in rows], where="mid", color="k", label="target")
    ax.set_xlabel("normal trial (by id)")
    ax.set_ylabel("judgments")
    ax.set_title("Coverage per trial")
    ax.legend(loc="upper right")
    return fig


def _bars(ax, heights: list[float], colors: list[str], width: float = 0.8) -> None:
    """What ``ax.bar(range(n), heights, color=colors)`` draws, as one collection of rectangles: one artist
    instead of one patch per bar, so thousands of participants draw in milliseconds, not seconds."""
    half = width / 2
    verts = [((x - half, 0.0), (x - half, h), (x + half, h), (x + half, 0.0)) for x, h in enumerate(heights)]
    ax.add_collection(PolyCollection(verts, facecolors=colors, edgecolors="none", linewidths=0))
    lo, hi = -half, len(heights) - 1 + half
    pad = ax.margins()[0] * (hi - lo)  # the x-margin bar's autoscaling adds
    ax.set_xlim(lo - pad, hi + pad)


def qc(summary: Summary) -> Figure:
    fig, axes = _subplots(1, 3, figsize=(10, 3))
    rows = [p for p in summary.qc if p.judgments]
    if not rows:
        return _empty(fig, axes[0], "no judgments yet")
    rules = summary.rules
    colors = ["tab:red" if p.flagged else "tab:blue" for p in rows]
    for ax, attr, line, title in (
        (axes[0], "sentinel_accuracy", rules["min_sentinel_accuracy"], "sentinel accuracy"),
        (axes[1], "repeat_consistency", rules["min_repeat_consistency"], "repeat consistency"),
        (axes[2], "fast_share", rules["max_fast_share"], f"share < {rules['min_response_ms']:.0f} ms"),
    ):
        vals = [getattr(p, attr) for p in rows]
        _bars(ax, [v if v is not None else 0 for v in vals], colors)
        ax.axhline(line, color="k", ls="--", lw=1)
        ax.set_ylim(0, 1.05)
        ax.set_title(title)
        ax.set_xlabel("participant")
    fig.suptitle("QC per participant (red = flagged)")
    fig.tight_layout()
    return fig


def _by_codec(rows: list[dict], y: str) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = defaultdict(list)
    for r in rows:
        out[r["codec"]].append((r["mean_bpp"], r[y], r["label"]))
    return out


def winrate(summary: Summary) -> Figure:
    fig, ax = _subplots(1, 1, figsize=(6, 4))
    rows = summary.win_rates
    if not rows:
        return _empty(fig, ax, "no judgments yet")
    for codec, pts in _by_codec(rows, "win_rate").items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=codec)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("win rate")
    ax.set_ylim(0, 1)
    ax.set_title("Win rate per codec and bitrate")
    ax.legend()
    return fig


def scale(summary: Summary) -> Figure:
    """JOD per codec×setting against mean bpp, one line per codec with its 95 % interval band."""
    fig, ax = _subplots(1, 1, figsize=(6, 4))
    res = summary.scale
    if res["error"]:
        return _empty(fig, ax, "no scale: " + textwrap.fill(res["error"], 60))
    by: dict[str, list] = defaultdict(list)
    for r in res["rows"]:
        by[r["codec"]].append((r["mean_bpp"], r["jod"], r["ci_low"], r["ci_high"]))
    for codec, pts in by.items():
        pts.sort()
        x = [p[0] for p in pts]
        (line,) = ax.plot(x, [p[1] for p in pts], "o-", label=codec)
        ax.fill_between(x, [p[2] for p in pts], [p[3] for p in pts], color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("bits per pixel (mean over references)")
    ax.set_ylabel("quality (JOD, mean 0)")
    ax.set_title("Quality scale per codec×setting (Thurstone, 95 % CI)")
    ax.legend()
    return fig


def agreement(summary: Summary) -> Figure:
    fig, ax = _subplots(1, 1, figsize=(6, 3.5))
    ag = summary.agreement
    ma = summary.metrics
    labels = ["majority", "pairwise\n(ceiling)", "split-half", "PSNR 2AFC", "SSIM 2AFC"]
    vals = [ag.majority_agreement, ag.pairwise_agreement, ag.split_half, ma["psnr"], ma["ssim"]]
    if all(v is None for v in vals):
        return _empty(fig, ax, "not enough judgments")
    ax.bar(labels, [v or 0 for v in vals], color=["tab:gray"] * 3 + ["tab:green"] * 2)
    for i, v in enumerate(vals):
        ax.text(i, (v or 0) + 0.02, "n/a" if v is None else f"{v:.2f}", ha="center")
    ax.set_ylim(0, 1.1)
    ax.set_title(f"Agreement between judges and with metrics ({ma['trials']} trials)")
    return fig


PLOTS = {
    "timeline": timeline,
    "coverage": coverage,
    "qc": qc,
    "winrate": winrate,
    "scale": scale,
    "agreement": agreement,
}


def render(name: str, summary: Summary, fmt: str) -> bytes:
    """The named figure of a study's ``summary`` as PNG or SVG bytes."""
    fig = PLOTS[name](summary)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100, bbox_inches="tight")
    return buf.getvalue()
