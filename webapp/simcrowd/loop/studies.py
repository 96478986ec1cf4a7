"""The closed loop's studies (stages 1, 2, 4 and 5): study-1 crops, the hidden observer, experiment files,
a study filled by the simulated crowd, its export, how well metrics recover the observer, and per study
the preference and the JOD scale."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from learning import twoafc
from learning.data.bapps import Triplet, load_2afc, load_triplet
from learning.dpl import DPL
from learning.dpl.weightfile import save_weights
from learning.fitting.mixing import MixChoice, choose_mse_weight
from learning.metrics import get_metric
from learning.observers import ObserverDistance
from learning.scaling import preference, scale_pairs
from learning.scoring import triplet_distances
from webapp.experiments.models import Experiment
from webapp.simcrowd.loop.config import ALEX, KODAK, LoopConfig, log
from webapp.simcrowd.run import SimConfig, simulate
from webapp.stimuli.models import Stimulus


def write_crops(out: Path, images: range, size: int, per_image: int, seed: int) -> Path:
    """``per_image`` seeded square crops of each kodimNN in ``images`` as PNGs under ``out``."""
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
    exp = Experiment.objects.get(slug=slug)
    exp.status = "live"
    exp.save(update_fields=["status"])
    normal = exp.trials.filter(kind="normal").count()
    participants = math.ceil(normal * exp.judgments_per_trial / (per_assignment * 0.8)) + 2
    s = simulate(SimConfig(slug=slug, observer=observer, participants=participants, concurrency=4,
                           noise=cfg.noise, seed=seed, device=cfg.torch_device))
    if not s.audit_ok:
        raise CommandError(f"{slug}: audit failed: {s.stored} stored, {s.acknowledged} acknowledged")
    log(f"   {slug}: {s.completed} participants completed, {s.acknowledged} judgments "
        f"({s.judgments_per_s:.1f}/s), {s.flagged} flagged, audit ok")
    return {"participants": s.completed, "judgments": s.acknowledged, "judgments_per_s": s.judgments_per_s,
            "flagged": s.flagged, "trials": normal}


def export(slug: str, out: Path) -> Path:
    call_command("export_dataset", slug, "--out", str(out), "--include-simulated", "--exclude-flagged",
                 verbosity=0)
    return out


def judged(splits: Path | list[Path]) -> tuple[list[Triplet], np.ndarray]:
    """The triplets of exported splits and the fraction of judges who chose the second image of each."""
    sets = load_2afc(splits)
    return [t for s in sets for t in s.triplets], np.concatenate([s.judges for s in sets])


def observer_distances(observer: ObserverDistance, triplets: list[Triplet]) -> np.ndarray:
    """N×2 distances of the hidden observer (reference to each image), noise-free, its terms scaled by
    their spread over these triplets as the simulated crowd scales them over a study's trials."""
    terms = []
    for t in triplets:
        ref, a, b, _ = load_triplet(t)
        terms.append((observer.term_distances(ref, a), observer.term_distances(ref, b)))
    observer.calibrate([[d0[i] - d1[i] for d0, d1 in terms] for i in range(len(observer.caches))])
    return np.array([[observer.combine(d0), observer.combine(d1)] for d0, d1 in terms])


def observer_score(d: np.ndarray, h: np.ndarray, boot: int, seed: int) -> dict:
    """The hidden observer's own 2AFC score on judged triplets (the ceiling any metric can reach on them,
    in expectation), with its bootstrap interval."""
    per = twoafc.per_triplet(d[:, 0], d[:, 1], h)
    return {"score": float(per.mean()), "ci": list(twoafc.bootstrap_ci(per, boot, seed=seed)), "n": len(per)}


def mse_weight(splits: list[Path], dpl_spec: str, device: torch.device) -> MixChoice:
    """μ of ``DPL + μ·MSE`` from the judgments of study-1 splits the DPL was not fitted on
    (``learning.fitting.mixing``): the DPL's distances and 255²·MSE (from PSNR, whose registry distance is
    −PSNR) on their triplets."""
    triplets, h = judged(splits)
    d_dpl = triplet_distances(get_metric(dpl_spec, device), triplets, progress=False)
    d_psnr = triplet_distances(get_metric("psnr"), triplets, progress=False)  # −PSNR in dB
    return choose_mse_weight(d_dpl, 255.0**2 * 10.0 ** (d_psnr / 10.0), h)


def observer_agreement(test: Path, labels: dict[str, str], observer: np.ndarray,
                       device: torch.device) -> dict[str, float]:
    """Per metric, the share of held-out triplets it orders as the hidden observer (its noise-free
    distances ``observer``, N×2) does: how well a metric recovers the observer, without the answers' noise
    that makes 2AFC scores on a few dozen trials overlap. Ties count one half."""
    triplets, _ = judged(test)
    truth = np.sign(np.diff(observer, axis=1))
    out = {}
    for spec, label in labels.items():
        metric = get_metric(spec, device)
        d = triplet_distances(metric, triplets, progress=False)  # distances: smaller = closer
        sign = np.sign(np.diff(d, axis=1))
        out[label] = float(np.mean(np.where(sign == 0, 0.5, sign == truth)))
    return out


# study 2's copies: (slug, observer, mode); "hidden" is the hidden observer. In pair mode the page shows no
# reference, and the simulated observer is given it (an observer who knows what the original looked like).
STUDY2 = (("loop-study2", "hidden", "triplet"), ("loop-study2-psnr", "psnr", "triplet"),
          ("loop-study2-pair", "hidden", "pair"))
STUDY2_KEYS = {"loop-study2": "hidden_observer", "loop-study2-psnr": "psnr_observer",
               "loop-study2-pair": "hidden_observer_pair"}


def codec_rows(judgments_csv: Path) -> list[tuple[str, str, str, str]]:
    """(participant, codec a, codec b, chosen codec) for every normal-trial judgment of an export."""
    rows = []
    with open(judgments_csv, newline="") as f:
        for r in csv.DictReader(f):
            if r["kind"] == "normal":
                a, b = r["stimulus_a_codec"], r["stimulus_b_codec"]
                rows.append((r["participant"], a, b, a if r["chosen"] == "a" else b))
    return rows


def preferences(rows: list[tuple[str, str, str, str]], pairs: dict[str, tuple[str, str]], boot: int,
                seed: int) -> dict:
    """Per entry ``key: (a, b)`` of ``pairs``, P(codec a chosen over codec b) in ``rows`` (``codec_rows``),
    with its 95 % interval by bootstrap over participants (``learning.scaling.preference``)."""
    out = {}
    for key, (a, b) in pairs.items():
        pref = preference(rows, a, b, n_boot=boot, seed=seed)
        out[key] = {"p": pref.p, "ci": [pref.ci_low, pref.ci_high], "n": pref.judgments,
                    "participants": pref.participants}
    return out


def study_figures(judgments_csv: Path, pairs: dict[str, tuple[str, str]], names: dict[str, str], boot: int,
                  seed: int) -> dict:
    """``preferences`` of one study's export and its JOD scale per codec, 95 % intervals by bootstrap over
    participants (``learning.scaling``)."""
    rows = codec_rows(judgments_csv)
    out = preferences(rows, pairs, boot, seed)
    scale = scale_pairs(rows, n_boot=boot, seed=seed)
    out["scale"] = [{**r, "condition": names.get(r["condition"], r["condition"])} for r in scale.rows()]
    return out


def stimulus_bpp(refs) -> dict[str, float]:
    """Mean bpp per codec setting of the stimuli made from the references ``refs``."""
    out: dict[str, list[float]] = {}
    for s in Stimulus.objects.filter(reference__in=refs).exclude(codec="original"):
        out.setdefault(f"{s.codec} {s.setting_key}", []).append(s.bpp)
    return {k: float(np.mean(v)) for k, v in out.items()}

