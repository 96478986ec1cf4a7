"""2AFC agreement of metrics with human judgments, per set: :func:`score_metrics` (what
``python -m learning score`` runs; the site, benches and tests call the same function).

Per set and metric: the 2AFC score averaged over triplets, a percentile bootstrap 95% interval
(resampling triplets) and the human ceiling where judge counts exist (see ``learning.twoafc``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from learning import twoafc
from learning.data.bapps import Triplet, load_2afc, load_triplet, to_tensor, triplet_rng
from learning.errors import LearningError
from learning.metrics.registry import Metric, get_metric

__all__ = ["score_metrics", "triplet_distances"]


def triplet_distances(metric: Metric, triplets: Sequence[Triplet], patch: int | None = None, seed: int = 0,
                      batch_size: int = 32, desc: str = "", progress: bool = True) -> np.ndarray:
    """N×2 array (d(ref, p0), d(ref, p1)) of ``metric`` over ``triplets``, batched by image size; with
    ``patch``, the same seeded random crop of each triplet as everywhere else (``triplet_rng``)."""
    d = np.empty((len(triplets), 2))
    pending: list = []

    def flush():
        groups: dict = {}
        for it in pending:
            groups.setdefault(it[1].shape, []).append(it)
        for items in groups.values():
            ref, a, b = (to_tensor([it[j] for it in items]) for j in (1, 2, 3))
            with torch.inference_mode():
                d0 = metric.distance(ref, a).double().numpy()
                d1 = metric.distance(ref, b).double().numpy()
            for row, it in enumerate(items):
                d[it[0]] = (d0[row], d1[row])
        pending.clear()

    for i, t in enumerate(tqdm(triplets, desc=desc, unit="triplet", leave=False, file=sys.stderr,
                               disable=not progress)):
        r, a, b, _ = load_triplet(t, patch, triplet_rng(t, seed) if patch else None)
        pending.append((i, r, a, b))
        if len(pending) >= batch_size:
            flush()
    flush()
    return d


def score_metrics(
    data: Sequence[str | Path] | str | Path,
    metrics: Sequence[str] | str,
    *,
    patch: int | None = None,
    bootstrap: int = 1000,
    batch_size: int = 32,
    seed: int = 0,
    device: torch.device | None = None,
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """2AFC scores of ``metrics`` (registry names, or one comma-separated string) on the BAPPS-layout
    sets under ``data``; one row per (set, metric), sets in ``load_2afc`` order, metrics as given.

    Row: ``set``, ``metric``, ``score`` (mean 2AFC), ``ci`` ((lo, hi) bootstrap 95% interval with
    ``bootstrap`` resamples, None for 0), ``human_ceiling`` (None without judge counts), ``n``,
    ``implementation``. ``patch``: None for whole images or a seeded square crop size. Deep metrics run on
    ``device`` (None: the CPU), classical ones on the CPU. ``on_row`` is called with each
    row as soon as it is computed. Unknown metrics, bad arguments and malformed sets raise LearningError
    before any metric runs.
    """
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    if not names:
        raise LearningError("no metrics given")
    if bootstrap < 0 or batch_size < 1:
        raise LearningError("bootstrap must be ≥ 0 and batch_size ≥ 1")
    if patch is not None and patch < 16:
        raise LearningError(f"patch {patch!r}: use None or a size of at least 16")
    bound = [get_metric(n, device) for n in names]  # unknown names fail before any work
    sets = load_2afc(data)
    results = []
    for s in sets:
        h = s.judges
        ceil_t = twoafc.human_ceiling(h, s.n_judges)
        ceiling = float(np.nanmean(ceil_t)) if ceil_t is not None and np.isfinite(ceil_t).any() else None
        for name, metric in zip(names, bound):
            d = triplet_distances(metric, s.triplets, patch, seed, batch_size, f"{s.name} {name}", progress)
            per = twoafc.per_triplet(d[:, 0], d[:, 1], h)
            ci = twoafc.bootstrap_ci(per, bootstrap, seed=seed) if bootstrap else None
            row = {"set": s.name, "metric": name, "score": float(per.mean()), "ci": ci,
                   "human_ceiling": ceiling, "n": len(per), "implementation": metric.implementation}
            results.append(row)
            if on_row is not None:
                on_row(row)
    return results
