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
    base_lambda,
    calibrate,
    codec_distances,
    finish,
    observer_codec_distances,
    train,
    train_rate,
)
from webapp.simcrowd.loop.config import ALEX, KODAK, LoopConfig, Stages, log
from webapp.simcrowd.loop.figure import plot
from webapp.simcrowd.loop.studies import (
    STUDY2,
    STUDY2_KEYS,
    codec_rows,
    experiment_file,
    export,
    judged,
    make_observer,
    mse_weight,
    observer_agreement,
    observer_distances,
    observer_score,
    preferences,
    run_study,
    stimulus_bpp,
    study_figures,
    write_crops,
)
from webapp.simcrowd.observers import load_observer
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
    cfg.check_base()
    stages = Stages()
    report: dict = {"config": asdict(cfg), "host_cpus": os.cpu_count()}
    t_all = time.perf_counter()
    call_command("migrate", verbosity=0)
    observer_file = work / "observer.pt"
    if cfg.observer == "alex-lin":
        make_observer(observer_file, cfg.observer_sigma, cfg.seed)
    observer = cfg.observer_spec(observer_file)
    report["observer"] = observer
    train_dir, test_dir = work / "train_images", work / "kodim17-24"
    for d, rng in ((train_dir, range(1, 17)), (test_dir, range(17, 25))):
        d.mkdir()
        for i in rng:
            shutil.copy(KODAK / f"kodim{i:02d}.png", d / f"kodim{i:02d}.png")

    with stages("stage 1: study 1 on kodim01-16 crops, hidden observer"):
        crops = write_crops(work / "crops1", range(1, 17), cfg.crop, cfg.crops_per_image, cfg.seed)
        call_command("import_images", str(crops), "--split-seed", str(cfg.seed), "--source",
                     "closed-loop study 1", verbosity=0)
        codecs1 = list(cfg.study1_codecs) + ([f"ckpt:{cfg.base_codec}"] if cfg.base_codec else [])
        call_command("create_experiment", str(experiment_file(
            work / "study1.yaml", "loop-study1", "Closed loop, study 1", codecs1,
            cfg.study1_judgments, 20, cfg.seed)), verbosity=0)
        call_command("make_stimuli", "loop-study1", verbosity=0)
        report["stage1"] = {**run_study("loop-study1", observer, cfg, cfg.seed, 20), "codecs": codecs1}

    with stages("stage 2: export, fit, score on the held-out split, μ from the held-out judgments"):
        ds = export("loop-study1", work / "study1")
        fitted = work / "dpl.pt"
        fit = fit_dpl([ds / "train"], fitted, val=[ds / "val"], net="alex", backbone=str(ALEX),
                      cache=None, seed=cfg.seed, device=cfg.torch_device, progress=False)
        fitted_spec = f"dpl:{fitted}@{ALEX}"
        labels = {"psnr": "PSNR", "ssim": "SSIM", "ms-ssim": "MS-SSIM", fitted_spec: "fitted DPL"}
        rows = score_metrics(ds / "test", list(labels), bootstrap=boot, seed=cfg.seed,
                             device=cfg.torch_device, progress=False)
        scores = [{"metric_label": labels[r["metric"]], "score": r["score"], "ci": list(r["ci"]),
                   "n": r["n"], "human_ceiling": r["human_ceiling"]} for r in rows]
        hidden = load_observer(observer, cfg.torch_device)
        test_triplets, test_h = judged(ds / "test")
        d_obs = observer_distances(hidden, test_triplets)  # also sets the terms' scales, used in stage 3
        scores.append({"metric_label": "observer", **observer_score(d_obs, test_h, boot, cfg.seed),
                       "human_ceiling": scores[0]["human_ceiling"]})
        by = {s["metric_label"]: s["score"] for s in scores}
        agree = observer_agreement(ds / "test", labels, d_obs, cfg.torch_device)
        mix = mse_weight([ds / "val", ds / "test"], fitted_spec, cfg.torch_device)
        report["stage2"] = {
            "fit": {"val_2afc": getattr(fit, "val_score", None), "report": _plain(fit)},
            "scores": scores, "fitted_over_observer": by["fitted DPL"] / by["observer"],
            "fitted_beats_classical": all(by["fitted DPL"] > by[m] for m in ("PSNR", "SSIM", "MS-SSIM")),
            "agreement_with_observer": agree, "mse_weight": mix.as_dict(),
            "observer_scales": list(hidden.scales),
        }
        for s in scores:
            log(f"   {s['metric_label']:<11} 2AFC {s['score']:.4f} [{s['ci'][0]:.4f}, {s['ci'][1]:.4f}] "
                f"(n {s['n']})")
        log(f"   fitted / observer: {report['stage2']['fitted_over_observer']:.4f}")
        log("   ordering as the observer: " + ", ".join(f"{k} {v:.3f}" for k, v in agree.items()))
        log("   μ of DPL + μ·MSE on the val and test splits: " + ", ".join(
            f"{m:.3g}: {sc:.4f}±{se:.4f}" for m, sc, se in mix.candidates) + f" → μ = {mix.mu:.3g}"
            + (f" (r = {mix.mu / mix.scale:.3g})" if mix.scale > 0 else ""))

    with stages("stage 3: MSE, loop (DPL + μ·MSE) and pure-DPL fine-tunes of the base at a common rate"):
        t0 = time.perf_counter()
        if cfg.base_codec is not None:
            base, base_res, mse_lmbda = cfg.base_codec, None, base_lambda(cfg.base_codec)
        else:
            base, mse_lmbda = work / "base.pt", cfg.base_lmbda
            base_res = finish(train(base, train_dir, test_dir, cfg, steps=cfg.base_steps, lmbda=mse_lmbda,
                                    loss="mse", init=None, lr=1e-3, target=None, threads=2), "base")
        losses = {"mse": "mse", "loop": mix.loss_spec(str(fitted))}
        if mix.mu > 0:  # else the loop codec is the pure-DPL one
            losses["dpl"] = f"dpl:{fitted}"
        bpp0, lmbdas = calibrate(base, train_dir, losses, mse_lmbda, cfg)
        target = train_rate(base) if base_res is not None else bpp0
        log(f"   base {base.name}: training rate {target:.3f} bpp; starting λ "
            + ", ".join(f"{k} {v:.4g}" for k, v in lmbdas.items()))
        threads = 1 if len(losses) > 1 else 2
        procs = {k: train(work / f"codec_{k}.pt", train_dir, test_dir, cfg, steps=cfg.finetune_steps,
                          lmbda=lmbdas[k], loss=spec, init=str(base), lr=cfg.finetune_lr, target=target,
                          threads=threads) for k, spec in losses.items()}
        res = {k: finish(p, k) for k, p in procs.items()}
        report["stage3"] = {"base": str(base), "base_eval": (base_res or {}).get("bitstream_eval"),
                            "target_train_bpp": target, "losses": losses,
                            "train_wall_s": round(time.perf_counter() - t0, 1)}
        for k, r in res.items():
            ev = r["bitstream_eval"]
            report["stage3"][k] = {**ev, "final_lmbda": r["lmbda"], "train_bpp": r["last_train"]["bpp"]}
            log(f"   {k}: {ev['bitstream_bpp']:.4f} bpp, PSNR {ev['bitstream_psnr']:.2f} dB on "
                f"kodim17-24 (final λ {r['lmbda']:.4g})")
        ratio = report["stage3"]["loop"]["bitstream_bpp"] / report["stage3"]["mse"]["bitstream_bpp"]
        report["stage3"]["bpp_ratio"] = ratio
        log(f"   bpp loop / MSE: {ratio:.3f} (within 10 %: {abs(ratio - 1) <= 0.10})")
        ckpts = {k: work / f"codec_{k}.pt" for k in losses}
        dist = codec_distances(ckpts, test_dir, {"fitted DPL": fitted_spec, "PSNR": "psnr"},
                               cfg.torch_device)
        for k, v in observer_codec_distances(hidden, ckpts, test_dir).items():
            dist[k]["observer"], dist[k]["per_image"]["observer"] = v["mean"], v["per_image"]
        report["stage3"]["distances"] = dist
        for label in ("observer", "fitted DPL", "PSNR"):
            m, d = dist["mse"]["per_image"][label], dist["loop"]["per_image"][label]
            better = sum((x > y) if label == "PSNR" else (x < y) for x, y in zip(d, m))
            log(f"   {label:<10} MSE codec {dist['mse'][label]:.4f}, loop codec {dist['loop'][label]:.4f} "
                f"(loop codec better on {better} of {len(m)} images)")

    with stages("stage 4: study 2 on kodim17-24, the codecs against JPEG and HEIC at matched bpp"):
        matched = float(np.mean([report["stage3"][k]["bitstream_bpp"] for k in losses]))
        learned = {k: f"ckpt:{ckpts[k]}" for k in losses}
        codecs2 = [*learned.values(), f"jpeg@{matched:.4f}", f"heic@{matched:.4f}"]
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

    with stages("stage 5: preferences and scale, with 95 % intervals over participants"):
        jpeg, heic = "jpeg", "heic"  # an export names a rate-targeted classical stimulus by its codec alone
        names = {learned["mse"]: "MSE codec", learned["loop"]: "loop codec", jpeg: "JPEG", heic: "HEIC"}
        pairs = {"loop_over_mse": (learned["loop"], learned["mse"]),
                 "loop_over_jpeg": (learned["loop"], jpeg), "loop_over_heic": (learned["loop"], heic)}
        if "dpl" in learned:
            names[learned["dpl"]] = "pure-DPL codec"
            pairs["pure_dpl_over_mse"] = (learned["dpl"], learned["mse"])
        report["stage5"] = {}
        for slug, key in STUDY2_KEYS.items():
            ds2 = export(slug, work / slug)
            figs = study_figures(ds2 / "judgments.csv", pairs, names, boot, cfg.seed)
            report["stage5"][key] = figs
            for pk in pairs:
                pref = figs[pk]
                log(f"   {key}: P({pk.replace('_over_', ' ≻ ')}) = {pref['p']:.3f} [{pref['ci'][0]:.3f}, "
                    f"{pref['ci'][1]:.3f}] ({pref['n']} judgments, {pref['participants']} participants)")
            for r in figs["scale"]:
                log(f"      {r['condition'][:40]:<40} {r['jod']:+.2f} JOD [{r['ci_low']:+.2f}, "
                    f"{r['ci_high']:+.2f}]")
        # both copies the hidden observer judged (triplet and pair mode; different participants), pooled
        both = [row for slug in ("loop-study2", "loop-study2-pair")
                for row in codec_rows(work / slug / "judgments.csv")]
        report["stage5"]["hidden_observer_both"] = preferences(both, pairs, boot, cfg.seed)
        pref = report["stage5"]["hidden_observer_both"]["loop_over_mse"]
        log(f"   hidden observer, both copies: P(loop ≻ mse) = {pref['p']:.3f} [{pref['ci'][0]:.3f}, "
            f"{pref['ci'][1]:.3f}] ({pref['n']} judgments, {pref['participants']} participants)")
    report["stage_s"] = stages.times
    report["total_s"] = round(time.perf_counter() - t_all, 1)
    h, p, pair = (report["stage5"][k] for k in ("hidden_observer", "psnr_observer", "hidden_observer_pair"))
    report["verdict"] = {
        "fitted_beats_classical": report["stage2"]["fitted_beats_classical"],
        "fitted_reaches_97pct_of_observer": report["stage2"]["fitted_over_observer"] >= 0.97,
        "rates_within_10pct": abs(report["stage3"]["bpp_ratio"] - 1) <= 0.10,
        "loop_codec_preferred_by_observer": h["loop_over_mse"]["ci"][0] > 0.5,
        "loop_codec_preferred_by_observer_both_copies":
            report["stage5"]["hidden_observer_both"]["loop_over_mse"]["ci"][0] > 0.5,
        "mse_codec_preferred_by_psnr_observer": p["loop_over_mse"]["ci"][1] < 0.5,
        "loop_codec_preferred_in_pair_mode": pair["loop_over_mse"]["ci"][0] > 0.5,
        "pure_dpl_codec_dispreferred_by_psnr_observer":
            p.get("pure_dpl_over_mse", p["loop_over_mse"])["ci"][1] < 0.5,
        "loop_codec_preferred_to_jpeg": h["loop_over_jpeg"]["ci"][0] > 0.5,
        "loop_codec_preferred_to_heic": h["loop_over_heic"]["ci"][0] > 0.5,
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

