"""The whole DPL fit as one call: :func:`fit_dpl` (what ``python -m learning fit`` runs).

BAPPS 2AFC sets in, a weight file out: the backbone runs once per unique image with the per-channel
distance vectors cached on disk (``learning.fitting.cache``), a validation part is held out when none is
given, the nonnegative weights are fitted by L-BFGS with early stopping (``learning.fitting.fit``), the
backbone is optionally fine-tuned with them (``learning.fitting.tune``), and the weights, head and
metadata are written by ``learning.dpl.weightfile.save_weights``. The CLI, the site, benches and tests call
this same function; process-wide settings (torch threads, allocator tuning) stay with the caller.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from learning import twoafc
from learning.data.bapps import load_2afc
from learning.device import device_or_cpu
from learning.dpl import weightfile
from learning.dpl.backbones import parse_backbone_spec
from learning.dpl.model import DPL
from learning.dpl.weightfile import file_sha256, save_weights
from learning.errors import LearningError
from learning.fitting import cache as fcache
from learning.fitting.fit import fit_weights, holdout, split_weights
from learning.fitting.tune import tune

__all__ = ["FitReport", "TuneSummary", "fit_dpl", "dataset_manifests"]

HEAD_FORM = "logit=(d0-d1)+c*(d0-d1)/(d0+d1+1e-8)"


@dataclass
class TuneSummary:
    """The ``tune`` stage's figures (2AFC before and after, kept epoch, epochs run, mean epoch time)."""

    train_2afc_before: float
    train_2afc: float
    val_2afc_before: float
    val_2afc: float
    best_epoch: int  # 0: no epoch beat the linear fit, which is kept
    epochs_run: int
    seconds_per_epoch: float


@dataclass
class FitReport:
    """What :func:`fit_dpl` did: the linear fit's figures, the tuning's if any, timings, the file written.

    ``train_2afc``/``val_2afc``/``rounds`` are the linear (L-BFGS) fit's; after ``tune`` the file's final
    figures are ``tune.train_2afc``/``tune.val_2afc`` (also in ``metadata``, as written to the file).
    """

    out: Path
    device: str
    n_train: int
    n_val: int
    train_2afc: float
    val_2afc: float
    val_2afc_uniform: float  # val 2AFC with every channel weight 1
    rounds: int  # best L-BFGS round
    head_c: float  # the head constant written to the file
    features_seconds: float  # loading, backbone set-up and channel vectors (cached or computed)
    fit_seconds: float
    tune_seconds: float | None = None  # None: no tuning
    tune: TuneSummary | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _start_weights(start: str | Path, net: str) -> torch.Tensor | None:
    """The flat starting weights for ``start`` (None: uniform); LearningError for an unusable one."""
    if str(start) == "uniform":
        return None
    if str(start) == "lpips":
        return torch.cat([w.reshape(-1) for w in weightfile.lpips_shipped_weights(net)])
    if not Path(start).is_file():
        raise LearningError(f"start {str(start)!r}: use uniform, lpips or an existing DPL weight file")
    data = weightfile.load_weights(start)
    if data.get("net", net) != net:
        raise LearningError(f"start file {start} holds {data.get('net')} weights, the fit uses {net}")
    return torch.cat([torch.as_tensor(w).reshape(-1) for w in data["weights"]])


def dataset_manifests(dirs: Sequence[str | Path]) -> dict[str, str]:
    """sha256 of manifest.json files found in the data folders or up to two levels above them."""
    out = {}
    for d in dirs:
        p = Path(d).resolve()
        for cand in (p, p.parent, p.parent.parent):
            m = cand / "manifest.json"
            if m.is_file():
                out[str(m)] = file_sha256(m)
                break
    return out


def _patch_size(patch: int | str | None) -> tuple[int | None, str]:
    """(crop size or None, the spec recorded in the metadata) for ``None | 'full' | int | 'INT'``."""
    if patch is None or patch == "full":
        return None, "full"
    if isinstance(patch, str) and patch.isdigit():
        size, spec = int(patch), patch
    elif isinstance(patch, int) and not isinstance(patch, bool):
        size, spec = patch, str(patch)
    else:
        raise LearningError(f"patch {patch!r}: use 'full', None or a size of at least 16")
    if size < 16:
        raise LearningError(f"patch {patch!r}: use 'full', None or a size of at least 16")
    return size, spec


def fit_dpl(
    data: Sequence[str | Path],
    out: str | Path,
    *,
    val: Sequence[str | Path] | None = None,
    net: str = "alex",
    backbone: str = "imagenet",
    cache: str | Path | None = "default",
    patch: int | str | None = "full",
    rounds: int = 60,
    patience: int = 5,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | None = None,
    tune_epochs: int = 0,
    tune_lr: float = 1e-5,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    start: str | Path = "uniform",
    prior: float = 0.0,
) -> FitReport:
    """Fit nonnegative DPL channel weights to the 2AFC judgments in ``data`` and write them to ``out``.

    ``data``/``val``: BAPPS-layout set folders (each a set or a folder of sets); without ``val``, a seeded
    10% of ``data`` (at least 10 triplets needed) is held out for early stopping. ``net``: alex | vgg |
    squeeze; ``backbone``: ``imagenet | PATH | random:SEED``. ``cache``: feature cache folder, ``"default"``
    (``learning.fitting.cache.DEFAULT_CACHE``) or None/``"none"`` for no cache. ``patch``: ``"full"``/None
    or a seeded random square crop size ≥ 16. ``rounds``/``patience``: L-BFGS rounds (10 iterations each)
    and rounds without val improvement before stopping. ``device``: where the backbone, the fit and the tuning
    run (None: the CPU); the file holds CPU tensors whatever the device. ``tune_epochs`` > 0 then fine-tunes
    the backbone end to end (Adam, ``tune_lr``), keeping the best val epoch; the file then carries the
    tuned backbone. ``start``: the weights the fit starts from, ``uniform`` (all ones), ``lpips`` (LPIPS's
    published lin weights for ``net``) or a DPL weight file of the same net; ``prior`` ≥ 0 pulls the
    fit towards them (``learning.fitting.fit``; 0: early stopping only). A DPL that trains a codec meets
    distortions its judgments never showed; the prior decides what it does there.
    ``progress``: tqdm bars on stderr; ``log``: receives one-line progress messages.

    Deterministic for a given seed and device. Raises LearningError for bad arguments or data, before
    the backbone runs; writes nothing then. Returns a :class:`FitReport`.
    """
    t_start = time.perf_counter()
    dev = device_or_cpu(device)
    if isinstance(data, (str, Path)):
        data = [data]
    if isinstance(val, (str, Path)):
        val = [val]
    data = [str(d) for d in data]
    val = [str(v) for v in val] if val else None
    if not data:
        raise LearningError("fit_dpl needs at least one data folder")
    if rounds < 1 or patience < 1 or batch_size < 1:
        raise LearningError("rounds, patience and batch_size must be positive")
    if tune_epochs < 0:
        raise LearningError(f"tune_epochs {tune_epochs}: must be 0 (no tuning) or a positive integer")
    if tune_epochs and not (math.isfinite(tune_lr) and tune_lr > 0):
        raise LearningError(f"tune_lr {tune_lr}: must be a positive number")
    out = Path(out)
    if out.exists() and out.is_dir():
        raise LearningError(f"out {out} is a folder")
    bb, bb_seed = parse_backbone_spec(backbone, "backbone")
    patch_size, patch_spec = _patch_size(patch)
    if not (math.isfinite(prior) and prior >= 0):
        raise LearningError(f"prior {prior}: must be a finite number >= 0")
    start_weights = _start_weights(start, net)
    if cache is None or cache == "none":
        cache_dir = None
    elif cache == "default":
        cache_dir = fcache.DEFAULT_CACHE
    else:
        cache_dir = Path(cache)
    say: Callable[[str], None] = log or (lambda msg: None)

    train_sets = load_2afc(data)  # validates the layout before any heavy work
    val_sets = load_2afc(val) if val else None
    train = [t for s in train_sets for t in s.triplets]
    model = DPL(net, weights=None, backbone=bb, seed=bb_seed).to(dev)
    say(f"backbone {model.backbone.source} ({net}) on {dev}, {len(train)} training triplets")

    def vectors(triplets, desc):
        m0, m1, n_new = fcache.channel_vectors(model, triplets, cache_dir, patch_size, seed, batch_size,
                                               desc=desc, progress=progress)
        say(f"{desc}: {len(triplets) - n_new} cached, {n_new} computed")
        return m0, m1, torch.tensor([t.judge for t in triplets], dtype=torch.float32)

    m0, m1, h = vectors(train, "train features")
    if val_sets is not None:
        val_triplets = [t for s in val_sets for t in s.triplets]
        v0, v1, vh = vectors(val_triplets, "val features")
    else:
        if len(train) < 10:
            raise LearningError("need at least 10 triplets to hold out a validation part; pass --val")
        tr_idx, va_idx = holdout(len(train), 0.1, seed)
        say(f"no --val: holding out {len(va_idx)} random training triplets")
        val_triplets, train = [train[i] for i in va_idx], [train[i] for i in tr_idx]
        tr_idx, va_idx = torch.from_numpy(tr_idx), torch.from_numpy(va_idx)
        v0, v1, vh = m0[va_idx], m1[va_idx], h[va_idx]
        m0, m1, h = m0[tr_idx], m1[tr_idx], h[tr_idx]
    t_feat = time.perf_counter()
    res = fit_weights(m0, m1, h, v0, v1, vh, max_rounds=rounds, patience=patience, log=log, device=dev,
                      init=start_weights, prior=prior)
    t_fit = time.perf_counter()

    uniform = torch.ones(m0.shape[1])
    val_uniform = twoafc.score((v0 @ uniform).numpy(), (v1 @ uniform).numpy(), vh.numpy())
    model.set_weights(split_weights(res.weights, model.channels))
    model.weights_source = "fit"
    meta = {
        "train_sets": [s.name for s in train_sets], "val_sets": [s.name for s in val_sets or []],
        "n_train": int(len(h)), "n_val": int(len(vh)), "train_2afc": res.train_2afc,
        "val_2afc": res.val_2afc, "val_2afc_uniform": val_uniform, "val_loss": res.val_loss,
        "rounds": res.rounds, "patch": patch_spec, "seed": seed, "start": str(start), "prior": prior,
        "dataset_manifests_sha256": dataset_manifests(data + (val or [])),
    }
    head_c = res.head_c
    summary = None
    if tune_epochs:
        tr = tune(model, res.head_c, train, val_triplets, epochs=tune_epochs, lr=tune_lr, patch=patch_size,
                  seed=seed, batch_size=batch_size, progress=progress, log=say)
        head_c = tr.head_c
        meta.update({"train_2afc": tr.train_2afc, "val_2afc": tr.val_2afc,
                     "train_2afc_linear": res.train_2afc, "val_2afc_linear": res.val_2afc,
                     "tune_train_2afc_before": tr.train_2afc_before,
                     "tune_val_2afc_before": tr.val_2afc_before,
                     "tune_epochs": tune_epochs, "tune_lr": tune_lr,
                     "tune_epochs_run": tr.epochs_run, "tune_best_epoch": tr.best_epoch,
                     "tune_history": [list(r) for r in tr.history]})
        summary = TuneSummary(tr.train_2afc_before, tr.train_2afc, tr.val_2afc_before, tr.val_2afc,
                              tr.best_epoch, tr.epochs_run,
                              sum(tr.epoch_seconds) / max(1, len(tr.epoch_seconds)))
    t_tune = time.perf_counter()
    save_weights(model, out, metadata=meta, head={"form": HEAD_FORM, "c": head_c})
    return FitReport(
        out=out, device=str(dev), n_train=int(len(h)), n_val=int(len(vh)), train_2afc=res.train_2afc,
        val_2afc=res.val_2afc, val_2afc_uniform=val_uniform, rounds=res.rounds, head_c=float(head_c),
        features_seconds=t_feat - t_start, fit_seconds=t_fit - t_feat,
        tune_seconds=t_tune - t_fit if tune_epochs else None, tune=summary, metadata=meta,
    )
