"""The closed loop, one command: judgments → export → fit → codec trained with the fitted DPL → a second
study that says whether the new codec is better (issue 15; bench/README.md "The loop closed").

On a scratch PostgreSQL database (created beside ``DATABASE_URL``'s, dropped at the end unless ``--keep``)
and a scratch MEDIA_ROOT, with the site's own commands and a simulated crowd over real HTTP:

1. study 1: triplets on crops of kodim01–16 (JPEG and WebP at several qualities), judged by a simulated
   observer whose weights are hidden from the fit: LPIPS-alex's lin weights, each multiplied by
   exp(σ·N(0,1)) with ``--seed``, on the real ImageNet AlexNet of ../shared/data/backbones/;
2. ``export_dataset`` → ``fit_dpl`` (train split, val split for early stopping) → ``score_metrics`` on the
   held-out test split: the fitted DPL against PSNR, SSIM, MS-SSIM and the observer's own metric (its
   2AFC score is the ceiling any metric can reach on these judgments, in expectation);
3. a small MSE base codec trained from random weights on kodim01–16, then two fine-tunes from it for the
   same number of steps, one with MSE and one with the fitted DPL, both with ``--target-bpp`` set to the
   base's training rate, so λ is chosen by the rate controller; their real-bitstream bpp on kodim17–24
   must be within 10 % of each other;
4. ``make_stimuli`` from both checkpoints and JPEG at their mean bpp (rate control) on kodim17–24; study 2
   (triplet mode) is every pair of the three per image, judged by the same observer; a copy of it judged by
   a PSNR observer (the control), and a pair-mode copy (no reference on the page; the simulated observer
   is given it) judged by the hidden observer;
5. per study, the probability that the DPL codec is preferred to the MSE codec, with a 95 % bootstrap
   interval over participants, and a JOD scale per codec (``learning.scaling``).

It prints each stage's figures and wall time and writes ``report.json`` and ``closed_loop.png``/``.svg``
to ``--out``. ``--small`` is the reduced version the slow test runs (fewer crops, judgments and steps).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/lab .venv/bin/python bench/closed_loop.py --out var/loop
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from scratchdb import admin_sql  # noqa: E402  (bench/, the script's folder)

from learning.data.shared import KODAK_DIR as KODAK  # noqa: E402
from learning.data.shared import data_dir  # noqa: E402

ALEX = data_dir() / "backbones/alexnet-imagenet-features.pth"


@dataclass
class LoopConfig:
    """The sizes of one run; ``small()`` is the CI version."""

    crop: int = 192
    crops_per_image: int = 3
    study1_codecs: tuple[str, ...] = ("jpeg:8,20,45", "webp:10,40")
    study1_judgments: int = 4
    observer_sigma: float = 0.5
    noise: float = 0.5
    arch: str = "bmshj2018-factorized"
    N: int = 64
    M: int = 96
    train_crop: int = 128
    batch: int = 8
    base_steps: int = 1500
    base_lmbda: float = 0.0067
    finetune_steps: int = 400
    finetune_lr: float = 1e-4
    study2_judgments: int = 24
    seed: int = 0
    device: str = "cpu"  # fit, score, observers and training (entropy coding stays on the CPU)

    @property
    def torch_device(self) -> torch.device:
        """``device`` for the library calls (``main`` has resolved the word already)."""
        return torch.device(self.device)

    @classmethod
    def small(cls) -> LoopConfig:
        return cls(crop=176, crops_per_image=2, study1_judgments=3, base_steps=1200, finetune_steps=250,
                   N=48, M=64, batch=4, study2_judgments=16)


def log(msg: str) -> None:
    print(msg, flush=True)


class Stages:
    """Wall time per stage, printed as each ends."""

    def __init__(self):
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        log(f"== {name}")
        t0 = time.perf_counter()
        yield
        self.times[name] = round(time.perf_counter() - t0, 1)
        log(f"   {name}: {self.times[name]:.1f} s")


# ----- scratch database and media -----
@contextlib.contextmanager
def scratch_database(base_url: str, keep: bool):
    """A new, empty PostgreSQL database on the server of ``base_url``; its URL. Dropped afterwards."""
    if not base_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("closed_loop needs DATABASE_URL=postgres://... (the scratch database goes "
                         "beside it)")
    name = f"closed_loop_{secrets.token_hex(4)}"
    head, _, _ = base_url.rpartition("/")
    admin = f"{head}/postgres"
    admin_sql(admin, f'CREATE DATABASE "{name}"')
    try:
        yield f"{head}/{name}"
    finally:
        if keep:
            log(f"kept scratch database {name}")
        else:
            from django.db import connections

            connections.close_all()
            admin_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def django_setup(db_url: str, media: Path) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ["MEDIA_ROOT"] = str(media)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    os.environ["CROWD_RATE_LIMIT"] = "0"  # every simulated participant comes from 127.0.0.1
    import django

    django.setup()
    from django.conf import settings

    settings.CROWD_RATE_LIMIT = 0
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# ----- stage 1 -----
def write_crops(out: Path, images: range, size: int, per_image: int, seed: int) -> Path:
    """``per_image`` seeded square crops of each kodimNN in ``images`` as PNGs under ``out``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for i in images:
        im = Image.open(KODAK / f"kodim{i:02d}.png").convert("RGB")
        for k in range(per_image):
            x = int(rng.integers(0, im.width - size + 1))
            y = int(rng.integers(0, im.height - size + 1))
            im.crop((x, y, x + size, y + size)).save(out / f"kodim{i:02d}_{k}.png")
    return out


def make_observer(path: Path, sigma: float, seed: int) -> list[float]:
    """LPIPS-alex lin weights × exp(σ·N(0,1)) on the real AlexNet, written as a DPL weight file."""
    import torch

    from learning.dpl import DPL
    from learning.dpl.weightfile import save_weights

    model = DPL("alex", weights="lpips", backbone=str(ALEX))
    g = torch.Generator().manual_seed(seed)
    per_layer = [w.detach() * torch.exp(sigma * torch.randn(w.shape, generator=g)) for w in model.weights]
    model.set_weights(per_layer)
    save_weights(model, path, {"observer": f"lpips-alex lin × exp({sigma}·N(0,1)), seed {seed}"})
    return [float(w.sum()) for w in per_layer]


def experiment_file(path: Path, slug: str, title: str, codecs: list[str], judgments: int,
                    per_assignment: int, seed: int, repeat_rate: float = 0.1, mode: str = "triplet") -> Path:
    """An experiment file; study 2 has no planned repeats: its pairs are close calls by design (matched
    rate), on which even a careful observer answers a repeat differently half the time, so the repeat
    rule would flag careful participants."""
    import yaml

    spec = {
        "slug": slug, "title": title, "mode": mode, "pairs": "all", "platform": "open",
        "question": ("Which of the two images is closer to the reference on top?" if mode == "triplet"
                     else "Which of the two images looks better?"),
        "trials_per_assignment": per_assignment, "judgments_per_trial": judgments,
        "sentinel_rate": 0.1, "repeat_rate": repeat_rate, "min_response_ms": 300, "practice_trials": 0,
        "seed": seed, "codecs": codecs,
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_study(slug: str, observer: str, cfg: LoopConfig, seed: int, per_assignment: int) -> dict:
    """Set ``slug`` live and let the simulated crowd fill every trial; the simulation's summary."""
    from webapp.crowd.simulate import SimConfig, simulate
    from webapp.experiments.models import Experiment

    exp = Experiment.objects.get(slug=slug)
    exp.status = "live"
    exp.save(update_fields=["status"])
    normal = exp.trials.filter(kind="normal").count()
    participants = math.ceil(normal * exp.judgments_per_trial / (per_assignment * 0.8)) + 2
    s = simulate(SimConfig(slug=slug, observer=observer, participants=participants, concurrency=4,
                           noise=cfg.noise, seed=seed, device=cfg.torch_device))
    if not s.audit_ok:
        raise SystemExit(f"{slug}: audit failed: {s.stored} stored, {s.acknowledged} acknowledged")
    log(f"   {slug}: {s.completed} participants completed, {s.acknowledged} judgments "
        f"({s.judgments_per_s:.1f}/s), {s.flagged} flagged, audit ok")
    return {"participants": s.completed, "judgments": s.acknowledged, "judgments_per_s": s.judgments_per_s,
            "flagged": s.flagged, "trials": normal}


def export(slug: str, out: Path) -> Path:
    from django.core.management import call_command

    call_command("export_dataset", slug, "--out", str(out), "--include-simulated", "--exclude-flagged",
                 verbosity=0)
    return out


def observer_agreement(test: Path, labels: dict[str, str], observer_spec: str,
                       device: torch.device) -> dict[str, float]:
    """Per metric, the share of held-out triplets it orders as the hidden observer's own (noise-free)
    metric does: how well a metric recovers the observer, without the answers' noise that makes 2AFC
    scores on a few dozen trials overlap. Ties count one half."""
    from learning.data.bapps import load_2afc
    from learning.metrics import get_metric
    from learning.scoring import triplet_distances

    triplets = [t for s in load_2afc(test) for t in s.triplets]
    observer = get_metric(observer_spec, device)
    truth = np.sign(np.diff(triplet_distances(observer, triplets, progress=False), axis=1))
    out = {}
    for spec, label in labels.items():
        metric = get_metric(spec, device)
        d = triplet_distances(metric, triplets, progress=False)  # distances: smaller = closer
        sign = np.sign(np.diff(d, axis=1))
        out[label] = float(np.mean(np.where(sign == 0, 0.5, sign == truth)))
    return out


# ----- stage 3 -----
def train(out: Path, data: Path, val: Path, cfg: LoopConfig, *, steps: int, lmbda: float, loss: str,
          init: str | None, lr: float, target: float | None, threads: int) -> subprocess.Popen:
    """``python -m learning train-codec`` in a child process (one per fine-tune, run side by side)."""
    cmd = [sys.executable, "-m", "learning", "train-codec", "--data", str(data), "--val", str(val),
           "--val-crop", "0", "--crop", str(cfg.train_crop), "--batch", str(cfg.batch),
           "--steps", str(steps), "--val-every", str(steps), "--log-every", str(max(steps // 10, 1)),
           "--lmbda", f"{lmbda:.6g}", "--loss", loss, "--lr", str(lr), "--seed", str(cfg.seed),
           "--workers", "0", "--threads", str(threads), "--device", cfg.device, "--no-progress",
           "--out", str(out)]
    cmd += ["--init", init] if init else ["--arch", cfg.arch, "--N", str(cfg.N), "--M", str(cfg.M),
                                          "--lr-schedule", "cosine"]
    if target is not None:
        cmd += ["--target-bpp", f"{target:.6g}"]
    if loss.startswith("dpl:"):
        cmd += ["--dpl-backbone", str(ALEX)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)


def codec_distances(ckpts: dict[str, Path], images: Path, metrics: dict[str, str],
                    device: torch.device) -> dict[str, dict]:
    """Per codec, the mean of each metric between every image in ``images`` and its decoded real bitstream
    (noise-free: what the observers' answers are drawn around), with the bpp (``learning.rd.run_rd``)."""
    from learning.rd.evaluate import run_rd

    out = {}
    for name, path in ckpts.items():
        rows = run_rd(sorted(images.glob("*.png")), [f"ckpt:{path}"], [], list(metrics.values()),
                      progress=False, device=device)
        per_image = {label: [r.metrics[spec] for r in rows] for label, spec in metrics.items()}
        out[name] = {"bpp": float(np.mean([r.achieved_bpp for r in rows])),
                     **{label: float(np.mean(v)) for label, v in per_image.items()}, "per_image": per_image}
    return out


def finish(proc: subprocess.Popen, what: str) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{what}: train-codec failed (exit {proc.returncode})")
    return json.loads(out)


def train_rate(ckpt: Path, last: int = 3) -> float:
    """Mean training bpp of the last ``last`` train records of a run's log."""
    from learning.training.loop import log_path

    recs = [r for r in json.loads(log_path(ckpt).read_text()) if "bpp" in r and "loss" in r]
    return float(np.mean([r["bpp"] for r in recs[-last:]]))


def calibrate_dpl_lambda(base: Path, data: Path, dpl: Path, mse_lmbda: float, cfg: LoopConfig) -> float:
    """A starting DPL λ with the same share of distortion in the loss as MSE's on the base model's output
    (the rate controller does the rest): λ_dpl = λ_mse · D_mse / D_dpl on a few training crops."""
    import torch

    from learning.architectures import build_model
    from learning.training import initial_weights as initial
    from learning.training.data import CropDataset
    from learning.training.losses import build_distortion

    start = initial.load_init(str(base), None, None, None)
    model = build_model(start.arch, start.N, start.M)
    initial.apply(model, start)
    model.eval()
    ds = CropDataset(str(data), cfg.train_crop, cfg.seed)
    x = torch.stack([ds[i][0] for i in range(min(len(ds), 8))])
    with torch.no_grad():
        x_hat = model(x)["x_hat"].clamp(0, 1)
        d_mse = float(build_distortion("mse")(x_hat, x))
        d_dpl = float(build_distortion(f"dpl:{dpl}", str(ALEX))(x_hat, x))
    return mse_lmbda * d_mse / max(d_dpl, 1e-12)


# ----- stages 4 and 5 -----
# study 2's copies: (slug, observer, mode); "hidden" is the hidden observer. In pair mode the page shows no
# reference, and the simulated observer is given it (an observer who knows what the original looked like).
STUDY2 = (("loop-study2", "hidden", "triplet"), ("loop-study2-psnr", "psnr", "triplet"),
          ("loop-study2-pair", "hidden", "pair"))
STUDY2_KEYS = {"loop-study2": "dpl_observer", "loop-study2-psnr": "psnr_observer",
               "loop-study2-pair": "dpl_observer_pair"}


def codec_rows(judgments_csv: Path) -> list[tuple[str, str, str, str]]:
    """(participant, codec a, codec b, chosen codec) for every normal-trial judgment of an export."""
    import csv

    rows = []
    with open(judgments_csv, newline="") as f:
        for r in csv.DictReader(f):
            if r["kind"] == "normal":
                a, b = r["stimulus_a_codec"], r["stimulus_b_codec"]
                rows.append((r["participant"], a, b, a if r["chosen"] == "a" else b))
    return rows


def study_figures(judgments_csv: Path, dpl_codec: str, mse_codec: str, names: dict[str, str], boot: int,
                  seed: int) -> dict:
    """P(DPL codec chosen over MSE codec) and the JOD scale per codec, 95 % intervals by bootstrap over
    participants (``learning.scaling``)."""
    from learning.scaling import preference, scale_pairs

    rows = codec_rows(judgments_csv)
    pref = preference(rows, dpl_codec, mse_codec, n_boot=boot, seed=seed)
    scale = scale_pairs(rows, n_boot=boot, seed=seed)
    return {
        "dpl_over_mse": {"p": pref.p, "ci": [pref.ci_low, pref.ci_high], "n": pref.judgments,
                         "participants": pref.participants},
        "scale": [{**r, "condition": names.get(r["condition"], r["condition"])} for r in scale.rows()],
    }


def plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
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
    for k, key in enumerate(("dpl_observer", "psnr_observer", "dpl_observer_pair")):
        pr = report["stage5"][key]["dpl_over_mse"]
        ax.errorbar([k], [pr["p"]], yerr=[[pr["p"] - pr["ci"][0]], [pr["ci"][1] - pr["p"]]], fmt="o",
                    capsize=6, color=("#1f77b4", "#d62728", "#2ca02c")[k])
    ax.axhline(0.5, color="#888", lw=1, ls="--")
    ax.set_xticks([0, 1, 2], ["hidden observer", "PSNR observer", "hidden, pair mode"])
    ax.set_xlim(-0.5, 2.5)
    ax.set_ylim(0, 1)
    b = report["stage3"]
    ax.set_ylabel("P(DPL codec preferred over MSE codec)")
    ax.set_title(f"Stage 5: study 2, MSE codec {b['mse']['bitstream_bpp']:.3f} bpp, "
                 f"DPL codec {b['dpl']['bitstream_bpp']:.3f} bpp")
    ax = axes[2]
    for k, (key, label) in enumerate((("dpl_observer", "hidden DPL observer"),
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
    plt.close(fig)


# ----- the loop -----
def run(cfg: LoopConfig, out: Path, base_url: str, keep: bool, boot: int = 2000) -> dict:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    stages = Stages()
    report: dict = {"config": asdict(cfg), "host_cpus": os.cpu_count()}
    t_all = time.perf_counter()
    with scratch_database(base_url, keep) as db_url:
        django_setup(db_url, work / "media")
        from django.core.management import call_command

        from learning.fitting.pipeline import fit_dpl
        from learning.scoring import score_metrics
        from webapp.experiments.models import Experiment
        from webapp.stimuli.models import ReferenceImage

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
                                "stimuli_bpp": _stimulus_bpp(refs2)}

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


def _stimulus_bpp(refs) -> dict[str, float]:
    from webapp.stimuli.models import Stimulus

    out: dict[str, list[float]] = {}
    for s in Stimulus.objects.filter(reference__in=refs).exclude(codec="original"):
        out.setdefault(f"{s.codec} {s.setting_key}", []).append(s.bpp)
    return {k: float(np.mean(v)) for k, v in out.items()}


def _plain(obj) -> dict:
    try:
        return {k: v for k, v in asdict(obj).items() if isinstance(v, (int, float, str, bool, type(None)))}
    except TypeError:
        return {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="var/loop", help="report, plot and the scratch work folder")
    p.add_argument("--small", action="store_true", help="the reduced CI version")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the scratch database")
    p.add_argument("--device", default="cpu",
                   help="auto | cpu | cuda[:N] | mps: fit, score, observers and codec training (default cpu)")
    args = p.parse_args(argv)
    base_url = os.environ.get("DATABASE_URL", "")
    if not (ALEX.is_file() and KODAK.is_dir()):
        raise SystemExit(f"needs {ALEX} and {KODAK} (../shared)")
    from learning.device import resolve_device
    from learning.errors import LearningError

    try:
        device = resolve_device(args.device)
    except LearningError as exc:
        raise SystemExit(f"error: {exc}") from None
    cfg = LoopConfig.small() if args.small else LoopConfig()
    cfg.seed, cfg.device = args.seed, str(device)
    run(cfg, Path(args.out), base_url, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
