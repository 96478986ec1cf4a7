"""The closed loop's five stages in order, on the database and MEDIA_ROOT this process was configured with
(the scratch ones: ``scratch.run_on_scratch``); ``report.json`` and the figure written to ``out``."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from django.core.management import call_command

from learning.fitting.pipeline import fit_dpl
from learning.scoring import score_metrics
from webapp.experiments.models import Experiment
from webapp.simcrowd.loop.codec_training import (
    calibrate_dpl_lambda,
    codec_distances,
    finish,
    train,
    train_rate,
)
from webapp.simcrowd.loop.config import ALEX, KODAK, LoopConfig, Stages, log
from webapp.simcrowd.loop.figure import plot
from webapp.simcrowd.loop.studies import (
    STUDY2,
    STUDY2_KEYS,
    experiment_file,
    export,
    make_observer,
    observer_agreement,
    run_study,
    stimulus_bpp,
    study_figures,
    write_crops,
)
from webapp.stimuli.models import ReferenceImage


def run(cfg: LoopConfig, out: Path, boot: int = 2000) -> dict:
    """The five stages with ``cfg`` on this process's (scratch) database, migrated first; the report, also
    written with the figure to ``out`` (its ``work`` folder, MEDIA_ROOT's parent, is emptied first)."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    stages = Stages()
    report: dict = {"config": asdict(cfg), "host_cpus": os.cpu_count()}
    t_all = time.perf_counter()
    call_command("migrate", verbosity=0)
    observer_file = work / "observer.pt"
    observer = f"observer:{observer_file}@{ALEX}"
    with stages("stage 1: study 1 on kodim01-16 crops, hidden observer"):
        make_observer(observer_file, cfg.observer_sigma, cfg.seed)
        crops = write_crops(work / "crops1", range(1, 17), cfg.crop, cfg.crops_per_image, cfg.seed)
        call_command("import_images", str(crops), "--split-seed", str(cfg.seed), "--source",
                     "closed-loop study 1", verbosity=0)
        call_command("create_experiment", str(experiment_file(
            work / "study1.yaml", "loop-study1", "Closed loop, study 1", list(cfg.study1_codecs),
            cfg.study1_judgments, 20, cfg.seed)), verbosity=0)
        call_command("make_stimuli", "loop-study1", verbosity=0)
        report["stage1"] = run_study("loop-study1", observer, cfg, cfg.seed, 20)

    with stages("stage 2: export, fit, score on the held-out split"):
        ds = export("loop-study1", work / "study1")
        fitted = work / "dpl.pt"
        fit = fit_dpl([ds / "train"], fitted, val=[ds / "val"], net="alex", backbone=str(ALEX),
                      cache=None, seed=cfg.seed, device=cfg.torch_device, progress=False)
        labels = {"psnr": "PSNR", "ssim": "SSIM", "ms-ssim": "MS-SSIM",
                  f"dpl:{fitted}@{ALEX}": "fitted DPL", f"dpl:{observer_file}@{ALEX}": "observer"}
        rows = score_metrics(ds / "test", list(labels), bootstrap=boot, seed=cfg.seed,
                             device=cfg.torch_device, progress=False)
        scores = [{"metric_label": labels[r["metric"]], "score": r["score"], "ci": list(r["ci"]),
                   "n": r["n"], "human_ceiling": r["human_ceiling"]} for r in rows]
        by = {s["metric_label"]: s["score"] for s in scores}
        agree = observer_agreement(ds / "test", {k: v for k, v in labels.items() if v != "observer"},
                                   f"dpl:{observer_file}@{ALEX}", cfg.torch_device)
        report["stage2"] = {
            "fit": {"val_2afc": getattr(fit, "val_score", None), "report": _plain(fit)},
            "scores": scores, "fitted_over_observer": by["fitted DPL"] / by["observer"],
            "fitted_beats_classical": all(by["fitted DPL"] > by[m] for m in ("PSNR", "SSIM", "MS-SSIM")),
            "agreement_with_observer": agree,
        }
        for s in scores:
            log(f"   {s['metric_label']:<11} 2AFC {s['score']:.4f} [{s['ci'][0]:.4f}, {s['ci'][1]:.4f}] "
                f"(n {s['n']})")
        log(f"   fitted / observer: {report['stage2']['fitted_over_observer']:.4f}")
        log("   ordering as the observer's own metric: "
            + ", ".join(f"{k} {v:.3f}" for k, v in agree.items()))

    with stages("stage 3: base codec, then MSE and DPL fine-tunes at a common target rate"):
        train_dir, test_dir = work / "train_images", work / "kodim17-24"
        for d, rng in ((train_dir, range(1, 17)), (test_dir, range(17, 25))):
            d.mkdir()
            for i in rng:
                shutil.copy(KODAK / f"kodim{i:02d}.png", d / f"kodim{i:02d}.png")
        base = work / "base.pt"
        t0 = time.perf_counter()
        base_res = finish(train(base, train_dir, test_dir, cfg, steps=cfg.base_steps,
                                lmbda=cfg.base_lmbda, loss="mse", init=None, lr=1e-3, target=None,
                                threads=2), "base")
        target = train_rate(base)
        dpl_lmbda = calibrate_dpl_lambda(base, train_dir, fitted, cfg.base_lmbda, cfg)
        log(f"   base: {cfg.base_steps} steps in {time.perf_counter() - t0:.0f} s, training rate "
            f"{target:.3f} bpp; DPL λ starts at {dpl_lmbda:.4g}")
        t0 = time.perf_counter()
        procs = {
            "mse": train(work / "mse.pt", train_dir, test_dir, cfg, steps=cfg.finetune_steps,
                         lmbda=cfg.base_lmbda, loss="mse", init=str(base), lr=cfg.finetune_lr,
                         target=target, threads=1),
            "dpl": train(work / "dpl_codec.pt", train_dir, test_dir, cfg, steps=cfg.finetune_steps,
                         lmbda=dpl_lmbda, loss=f"dpl:{fitted}", init=str(base), lr=cfg.finetune_lr,
                         target=target, threads=1),
        }
        res = {k: finish(p, k) for k, p in procs.items()}
        fine_s = time.perf_counter() - t0
        report["stage3"] = {"target_train_bpp": target, "base": base_res.get("bitstream_eval"),
                            "finetune_wall_s": round(fine_s, 1)}
        for k, r in res.items():
            ev = r["bitstream_eval"]
            report["stage3"][k] = {**ev, "final_lmbda": r["lmbda"], "train_bpp": r["last_train"]["bpp"]}
            log(f"   {k}: {ev['bitstream_bpp']:.4f} bpp, PSNR {ev['bitstream_psnr']:.2f} dB on "
                f"kodim17-24 (final λ {r['lmbda']:.4g})")
        ratio = report["stage3"]["dpl"]["bitstream_bpp"] / report["stage3"]["mse"]["bitstream_bpp"]
        report["stage3"]["bpp_ratio"] = ratio
        log(f"   bpp DPL / MSE: {ratio:.3f} (within 10 %: {abs(ratio - 1) <= 0.10})")
        dist = codec_distances({"mse": work / "mse.pt", "dpl": work / "dpl_codec.pt"}, test_dir, {
            "observer": f"dpl:{observer_file}@{ALEX}", "fitted DPL": f"dpl:{fitted}@{ALEX}",
            "LPIPS-alex": f"lpips-alex:{ALEX}", "PSNR": "psnr"}, cfg.torch_device)
        report["stage3"]["distances"] = dist
        for label in ("observer", "fitted DPL", "LPIPS-alex", "PSNR"):
            m, d = dist["mse"]["per_image"][label], dist["dpl"]["per_image"][label]
            better = sum((x > y) if label == "PSNR" else (x < y) for x, y in zip(d, m))
            log(f"   {label:<10} MSE codec {dist['mse'][label]:.4f}, DPL codec {dist['dpl'][label]:.4f} "
                f"(DPL codec better on {better} of {len(m)} images)")

    with stages("stage 4: study 2 on kodim17-24, MSE vs DPL codec vs JPEG at matched bpp"):
        matched = float(np.mean([report["stage3"][k]["bitstream_bpp"] for k in ("mse", "dpl")]))
        codecs2 = [f"ckpt:{work / 'mse.pt'}", f"ckpt:{work / 'dpl_codec.pt'}", f"jpeg@{matched:.4f}"]
        before = set(ReferenceImage.objects.values_list("pk", flat=True))
        call_command("import_images", str(test_dir), "--source", "closed-loop study 2", verbosity=0)
        refs2 = ReferenceImage.objects.exclude(pk__in=before)
        summaries = {}
        for slug, obs, mode in STUDY2:
            call_command("create_experiment", str(experiment_file(
                work / f"{slug}.yaml", slug, "Closed loop, study 2", codecs2, cfg.study2_judgments, 12,
                cfg.seed, repeat_rate=0.0, mode=mode)), verbosity=0)
            Experiment.objects.get(slug=slug).references.set(refs2)
            call_command("make_stimuli", slug, verbosity=0)
            summaries[slug] = run_study(slug, observer if obs == "hidden" else obs, cfg, cfg.seed + 1, 12)
        report["stage4"] = {"matched_bpp": matched, "codecs": codecs2, "studies": summaries,
                            "stimuli_bpp": stimulus_bpp(refs2)}

    with stages("stage 5: preference and scale, with 95 % intervals over participants"):
        names = {codecs2[0]: "MSE codec", codecs2[1]: "DPL codec"}
        report["stage5"] = {}
        for slug, key in STUDY2_KEYS.items():
            ds2 = export(slug, work / slug)
            figs = study_figures(ds2 / "judgments.csv", codecs2[1], codecs2[0], names, boot, cfg.seed)
            report["stage5"][key] = figs
            pref = figs["dpl_over_mse"]
            log(f"   {key}: P(DPL codec ≻ MSE codec) = {pref['p']:.3f} [{pref['ci'][0]:.3f}, "
                f"{pref['ci'][1]:.3f}] ({pref['n']} judgments, {pref['participants']} participants)")
            for r in figs["scale"]:
                log(f"      {r['condition'][:40]:<40} {r['jod']:+.2f} JOD [{r['ci_low']:+.2f}, "
                    f"{r['ci_high']:+.2f}]")
    report["stage_s"] = stages.times
    report["total_s"] = round(time.perf_counter() - t_all, 1)
    d, p, pair = (report["stage5"][k]["dpl_over_mse"] for k in ("dpl_observer", "psnr_observer",
                                                                "dpl_observer_pair"))
    report["verdict"] = {
        "fitted_beats_classical": report["stage2"]["fitted_beats_classical"],
        "fitted_reaches_97pct_of_observer": report["stage2"]["fitted_over_observer"] >= 0.97,
        "rates_within_10pct": abs(report["stage3"]["bpp_ratio"] - 1) <= 0.10,
        "dpl_codec_preferred_by_observer": d["ci"][0] > 0.5,
        "mse_codec_preferred_by_psnr_observer": p["ci"][1] < 0.5,
        "dpl_codec_preferred_in_pair_mode": pair["ci"][0] > 0.5,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    plot(report, out)
    log(f"total {report['total_s']:.0f} s; verdict: {json.dumps(report['verdict'])}")
    return report


def _plain(obj) -> dict:
    """A dataclass's plain fields (numbers, strings, booleans, None); {} for anything else."""
    try:
        return {k: v for k, v in asdict(obj).items() if isinstance(v, (int, float, str, bool, type(None)))}
    except TypeError:
        return {}

