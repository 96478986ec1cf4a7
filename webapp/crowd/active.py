"""Active sampling at entry: an arriving participant's normal trials chosen from the current JOD posterior.

The posterior is over codec×settings (the conditions of the dashboard's scale, pooled over references; see
``lab/jod_scales.py``): a trial compares the settings of its two stimuli. ``learning.scaling.design``
chooses the setting pairs (expected reduction of the posterior variance, ASAP's spanning-tree batch, the
slots already handed out but not yet judged counted as pending information); each chosen setting pair is
served by its least-held trial the participant has not had. ``create_assignment`` calls ``choose_trials``
under the experiment's row lock with the slot counters it already read, so the concurrency guarantees are
the balanced mode's: no trial twice for a participant, slots counted in ``TrialSlots``, expiry returns them.

Cost at entry: the posterior lives in this process, per experiment, and is brought up to date with one
query for the judgments stored since the last entry (by id). Every ``REFRESH_S`` seconds (and on the first
entry in a process) it is rebuilt from one aggregate query instead, which also picks up judgments whose
transactions committed after a higher id was read, and drops the judgments an erasure deleted (``forget``
drops it at once in the process that erased them). The fit is warm-started Newton on ≤ a few dozen
conditions, so choosing costs milliseconds (timed in bench/README.md, "active sampling and JOD scaling"):
cheap enough to run at every entry, under the experiment's row lock, instead of from a background job.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count, F, Max, Q

from learning.scaling import design, thurstone
from webapp.crowd.models import Judgment
from webapp.experiments.models import Trial

REFRESH_S = 60.0
_STATES: dict[int, _Posterior] = {}
_LOCK = threading.Lock()


@dataclass
class _Posterior:
    trial_pair: dict[int, tuple[int, int]]  # trial -> (setting of stimulus_a, setting of stimulus_b)
    n: int  # settings
    wins: np.ndarray = field(repr=False)
    judged_first: dict[int, int] = field(default_factory=dict)  # trial -> judged first showings
    watermark: int = 0
    built: float = 0.0
    mu: np.ndarray | None = None

    def add(self, trial: int, chose_b: bool, is_repeat: bool) -> None:
        a, b = self.trial_pair.get(trial, (None, None))
        if a is None or a == b:
            return
        win, lose = (b, a) if chose_b else (a, b)
        self.wins[win, lose] += 1
        if not is_repeat:
            self.judged_first[trial] = self.judged_first.get(trial, 0) + 1


def _judgments(experiment_id: int):
    return Judgment.objects.filter(trial__experiment_id=experiment_id, trial__kind="normal",
                                   item__is_practice=False)


def _build(experiment_id: int) -> _Posterior:
    """The posterior's counts from scratch: two queries (trials with settings, judgments per trial)."""
    rows = Trial.objects.filter(experiment_id=experiment_id, kind="normal").values_list(
        "id", "stimulus_a__codec", "stimulus_a__quality", "stimulus_a__target_bpp",
        "stimulus_b__codec", "stimulus_b__quality", "stimulus_b__target_bpp")
    settings: dict[tuple, int] = {}
    trial_pair = {}
    for t, *keys in rows:
        a, b = tuple(keys[:3]), tuple(keys[3:])
        trial_pair[t] = (settings.setdefault(a, len(settings)), settings.setdefault(b, len(settings)))
    n = len(settings)
    st = _Posterior(trial_pair, n, np.zeros((n, n)), built=time.monotonic())
    agg = (_judgments(experiment_id).values("trial_id")
           .annotate(n=Count("id"), nb=Count("id", filter=Q(chosen_id=F("trial__stimulus_b_id"))),
                     first=Count("id", filter=Q(item__is_repeat=False)), last=Max("id")))
    for r in agg:
        a, b = trial_pair[r["trial_id"]]
        if a != b:
            st.wins[b, a] += r["nb"]
            st.wins[a, b] += r["n"] - r["nb"]
        st.judged_first[r["trial_id"]] = r["first"]
        st.watermark = max(st.watermark, r["last"])
    return st


def _update(st: _Posterior, experiment_id: int) -> None:
    """Add the judgments stored since ``st.watermark`` (one query)."""
    new = (_judgments(experiment_id).filter(id__gt=st.watermark).order_by("id")
           .values_list("id", "trial_id", "chosen_id", "trial__stimulus_b_id", "item__is_repeat"))
    for jid, trial, chosen, stim_b, is_repeat in new:
        st.add(trial, chosen == stim_b, is_repeat)
        st.watermark = jid


def posterior(experiment_id: int) -> _Posterior:
    """This process's posterior counts for the experiment, brought up to date."""
    with _LOCK:
        st = _STATES.get(experiment_id)
    if st is None or time.monotonic() - st.built > REFRESH_S:
        st = _build(experiment_id)
        with _LOCK:
            _STATES[experiment_id] = st
    else:
        _update(st, experiment_id)
    return st


def forget(experiment_id: int) -> None:
    """Drop this process's posterior of the experiment (after an erasure removed judgments from it); other
    processes rebuild theirs within ``REFRESH_S`` seconds."""
    with _LOCK:
        _STATES.pop(experiment_id, None)


def choose_trials(experiment_id: int, held: dict[int, int], size: int,
                  rng: random.Random | None = None) -> list[int]:
    """``size`` trials (keys of ``held``: normal trials this participant may get → slots held) chosen
    from the posterior; fewer only when fewer are available."""
    rng = rng or random.Random()
    st = posterior(experiment_id)
    by_pair: dict[tuple[int, int], list[int]] = {}
    extra: list[int] = []  # trials whose two stimuli share a setting: no information about the scale
    for t in held:
        a, b = st.trial_pair.get(t, (0, 0))
        if a == b:
            extra.append(t)
        else:
            by_pair.setdefault((min(a, b), max(a, b)), []).append(t)
    pairs = np.array(sorted(by_pair), dtype=np.int64).reshape(-1, 2)
    pending = np.array([sum(max(0, held[t] - st.judged_first.get(t, 0)) for t in by_pair[tuple(p)])
                        for p in pairs], dtype=float)
    st.mu = thurstone.fit(st.wins, init=st.mu)
    precision = thurstone.hessian(st.mu, st.wins)
    for t_list in by_pair.values():
        t_list.sort(key=lambda t: (held[t], rng.random()))  # least-held trial of each pair first
    chosen: list[int] = []
    nprng = np.random.default_rng(rng.getrandbits(64))
    while len(chosen) < size and len(pairs):
        picked = design.choose(st.mu, precision, pairs, size - len(chosen), pending=pending,
                               criterion=design.CRITERION, strategy=design.STRATEGY, rng=nprng)
        for k in picked:
            chosen.append(by_pair[tuple(pairs[k])].pop(0))
        keep = np.array([bool(by_pair[tuple(p)]) for p in pairs], dtype=bool)
        pending = pending + np.isin(np.arange(len(pairs)), picked)  # taken now: pending from here on
        pairs, pending = pairs[keep], pending[keep]
    rng.shuffle(extra)
    return chosen + extra[: size - len(chosen)]
