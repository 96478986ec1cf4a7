"""The simulated crowd's glue to ``learning.observers``: the observer spec parsed, its spread over a study's
trials measured on the stored images (the pixels the site serves), and the reference a pair-mode page does
not show."""

from __future__ import annotations

import functools

import numpy as np
import torch

from learning.errors import LearningError
from learning.observers import ObserverDistance, parse_observer, spread
from webapp.crowd.models import AssignmentItem
from webapp.experiments.models import Trial
from webapp.simcrowd.client import SimulationError, decode_png

SPREAD_TRIALS = 400  # the spread is estimated on at most this many normal trials (seeded sample)


def load_observer(spec: str, device: torch.device | None = None) -> ObserverDistance:
    """The observer of ``spec`` (``learning.observers.parse_observer``), its deep metrics on ``device``
    (None: the CPU); SimulationError if it is not one. One object per (spec, device) in a process: its
    distances are memoised on the pixels, so studies on the same images (the closed loop's copies of study
    2) compute them once; each study calibrates the scales again before judging."""
    try:
        return _observer(spec.strip(), device)
    except LearningError as exc:
        raise SimulationError(f"observer {spec!r}: {exc}; nothing judged") from None


@functools.lru_cache(maxsize=4)
def _observer(spec: str, device: torch.device | None) -> ObserverDistance:
    return parse_observer(spec, device)


def _pixels(f) -> np.ndarray:
    with f.storage.open(f.name, "rb") as fh:
        return decode_png(fh.read())


def study_spread(exp, observer: ObserverDistance, seed: int) -> float:
    """s: std of d0 − d1 over (a seeded sample of) the normal trials, scored on the stored images, which
    are the pixels the site serves; a weighted-sum observer's terms are first scaled by their own spreads
    over the same trials. SimulationError if a metric cannot score them."""
    normal = Trial.objects.filter(experiment=exp, kind="normal").order_by("id")
    ids = list(normal.values_list("id", flat=True))
    if len(ids) > SPREAD_TRIALS:
        ids = sorted(np.random.default_rng(seed).choice(ids, SPREAD_TRIALS, replace=False).tolist())
    pairs = []  # per trial: each term's (d0, d1)
    trials = Trial.objects.filter(id__in=ids).select_related("reference", "stimulus_a", "stimulus_b")
    for t in trials.defer("stimulus_a__encoded", "stimulus_b__encoded"):
        ref = _pixels(t.reference.file)
        try:
            pairs.append((observer.term_distances(ref, _pixels(t.stimulus_a.decoded)),
                          observer.term_distances(ref, _pixels(t.stimulus_b.decoded))))
        except LearningError as exc:
            raise SimulationError(f"observer {observer.name}: {exc}; nothing judged") from None
    observer.calibrate([[d0[i] - d1[i] for d0, d1 in pairs] for i in range(len(observer.caches))])
    return spread([observer.combine(d0) - observer.combine(d1) for d0, d1 in pairs])


def reference_pixels(token: str, position: int) -> np.ndarray:
    """The reference of the trial at ``position`` of assignment ``token`` (pair mode shows none)."""
    item = AssignmentItem.objects.select_related("trial__reference").get(assignment__token=token,
                                                                         position=position)
    return _pixels(item.trial.reference.file)
