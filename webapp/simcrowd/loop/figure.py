"""The closed loop's figure: stage 2's 2AFC scores, stage 5's preference and JOD scale
(``closed_loop.png`` and ``.svg``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def plot(report: dict, out: Path) -> None:
    """Draw ``report``'s figure into ``out``/closed_loop.{png,svg} (a Figure of its own: no pyplot state)."""
    fig = Figure(figsize=(18, 4.4))
    axes = fig.subplots(1, 3)
    ax = axes[0]
    rows = report["stage2"]["scores"]
    names = [r["metric_label"] for r in rows]
    vals = [r["score"] for r in rows]
    err = np.array([[r["score"] - r["ci"][0], r["ci"][1] - r["score"]] for r in rows]).T
    ax.bar(range(len(rows)), vals, yerr=err, color=["#999"] * (len(rows) - 2) + ["#1f77b4", "#444"])
    ax.set_xticks(range(len(rows)), names, rotation=20)
    ax.set_ylim(min(r["ci"][0] for r in rows) - 0.02, max(r["ci"][1] for r in rows) + 0.02)
    ax.set_ylabel("2AFC score (held-out study-1 trials)")
    ax.set_title("Stage 2: the fitted DPL vs the observer")
    ax = axes[1]
    s5 = report["stage5"]
    shown = [("hidden_observer", "loop_over_mse", "loop ≻\nMSE"),
             ("hidden_observer_pair", "loop_over_mse", "loop ≻ MSE\npair mode"),
             ("hidden_observer_both", "loop_over_mse", "loop ≻ MSE\nboth copies"),
             ("hidden_observer", "loop_over_jpeg", "loop ≻\nJPEG"),
             ("hidden_observer", "loop_over_heic", "loop ≻\nHEIC"),
             ("hidden_observer", "pure_dpl_over_mse", "pure DPL\n≻ MSE"),
             ("psnr_observer", "loop_over_mse", "loop ≻ MSE\nPSNR obs."),
             ("psnr_observer", "pure_dpl_over_mse", "pure DPL ≻\nMSE, PSNR")]
    shown = [row for row in shown if row[0] in s5 and row[1] in s5[row[0]]]
    for k, (study, key, _) in enumerate(shown):
        pr = s5[study][key]
        ax.errorbar([k], [pr["p"]], yerr=[[pr["p"] - pr["ci"][0]], [pr["ci"][1] - pr["p"]]], fmt="o",
                    capsize=6, color="#d62728" if study == "psnr_observer" else "#1f77b4")
    ax.axhline(0.5, color="#888", lw=1, ls="--")
    ax.set_xticks(range(len(shown)), [label for _, _, label in shown], fontsize=7)
    ax.set_xlim(-0.5, len(shown) - 0.5)
    ax.set_ylim(0, 1)
    b = report["stage3"]
    ax.set_ylabel("P(preferred), 95 % CI")
    ax.set_title(f"Stage 5: study 2 at {report['stage4']['matched_bpp']:.3f} bpp "
                 f"(MSE {b['mse']['bitstream_bpp']:.3f}, loop {b['loop']['bitstream_bpp']:.3f})", fontsize=10)
    ax = axes[2]
    for k, (key, label) in enumerate((("hidden_observer", "hidden observer"),
                                      ("psnr_observer", "PSNR observer"))):
        rows = report["stage5"][key]["scale"]
        xs = np.arange(len(rows)) + (k - 0.5) * 0.25
        jod = np.array([r["jod"] for r in rows])
        err = np.array([[r["jod"] - r["ci_low"] for r in rows], [r["ci_high"] - r["jod"] for r in rows]])
        ax.errorbar(xs, jod, yerr=err, fmt="o", capsize=5, label=label)
        ax.set_xticks(np.arange(len(rows)), [r["condition"][:18] for r in rows])
    ax.axhline(0, color="#888", lw=1, ls="--")
    ax.set_ylabel("quality (JOD, mean 0), 95 % CI")
    ax.set_title("Stage 5: JOD scale per codec at matched bpp")
    ax.legend(fontsize=8)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out / f"closed_loop.{ext}", dpi=120)

