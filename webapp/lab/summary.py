"""The study page's analyses, computed once and shared by the page and its 6 plots (``get_summary``).

One ``Summary`` holds everything the dashboard shows that is derived from the judgments: progress, QC per
participant, win rates, the per-setting JOD scale, agreement, metric 2AFC, coverage and the timeline. It is
computed in one read-only snapshot (``export.snapshot``), stamped with what it was computed from (``Stamp``:
judgments, participants, erasures and the settings that change the figures) and stored in Django's cache
(Redis in production, shared by every process and the task worker; LocMem in an embedded setup).

``get_summary`` compares the stored stamp with the current one (three small aggregate queries):

- equal: the stored summary (fresh);
- different, and the study has at most ``INLINE_MAX`` judgments, or nothing is stored yet: computed here,
  stored, returned;
- different, larger study, shared cache: the stored (stale) summary is returned at once, flagged stale,
  and one background recomputation is queued (``refresh_summary``, a django-tasks task run by ``manage.py
  db_worker``; at most one queued per study at a time);
- different, larger study, the cache is this process's own (LocMem: a worker could not hand its result
  back): the stored summary while it is younger than ``LOCAL_MAX_AGE`` seconds (flagged stale), else
  computed here; so judging that goes on costs one computation a minute, not one per page and plot.

An erasure (``webapp.crowd.erasure``) drops the stored summary (``forget``), so no page shows the erased
participant again, not even as stale. The page says which judgments and what time its figures are from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from django.core.cache import cache, caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.db.models import Count, Max
from django.utils import timezone
from django_tasks import task

from webapp.crowd.models import Erasure, Judgment, Participant
from webapp.experiments.models import Experiment
from webapp.lab import analysis, jod_scales
from webapp.lab.export import snapshot
from webapp.lab.qc import compute_qc, qc_rules

INLINE_MAX = 20_000  # judgments up to which a stale summary is recomputed within the request
VERSION = 2  # part of the cache key: bump when Summary changes shape
CACHE_TIMEOUT = 30 * 24 * 3600
QUEUED_TIMEOUT = 15 * 60  # a refresh queued longer ago than this (a dead worker) is queued again
LOCAL_MAX_AGE = 60  # seconds a stale summary of a large study is shown when the cache is this process's own


@dataclass(frozen=True)
class Stamp:
    """What a summary was computed from: the study (its creation time: a study made again under a reused
    pk is another), its erasures (count: judgments are append-only except that a withdrawal or erasure
    deletes a participant's, which lowers the counts below), judgments (count, highest id), participants
    (count, highest id), the QC rules and the judgments wanted per trial."""

    created: datetime | None
    erasures: int
    judgments: int
    last_judgment: int | None
    participants: int
    last_participant: int | None
    rules: tuple
    judgments_per_trial: int


@dataclass
class Summary:
    """The dashboard's judgment-derived figures of one study, as of ``stamp`` (computed at ``computed_at``,
    in ``seconds``). ``qc``: ``ParticipantQC`` in participant order; ``scale``: ``jod_scales.per_setting``'s
    dict (its ``Scale`` kept for the study plan)."""

    stamp: Stamp
    computed_at: datetime
    seconds: float
    progress: dict
    qc: list
    rules: dict
    win_rates: list[dict]
    scale: dict
    agreement: object
    metrics: dict
    coverage: list[dict]
    timeline: list[tuple]
    stale: bool = field(default=False, compare=False)  # set on the copy ``get_summary`` hands out

    @property
    def judgments(self) -> int:
        return self.stamp.judgments


def stamp(experiment) -> Stamp:
    """The current ``Stamp`` of ``experiment`` (three small aggregate queries)."""
    j = Judgment.objects.filter(trial__experiment=experiment).aggregate(n=Count("id"), last=Max("id"))
    p = Participant.objects.filter(experiment=experiment).aggregate(n=Count("id"), last=Max("id"))
    erased = Erasure.objects.filter(experiment=experiment).count()
    rules = tuple(sorted(qc_rules(experiment).items()))
    return Stamp(experiment.created, erased, j["n"], j["last"], p["n"], p["last"], rules,
                 experiment.judgments_per_trial or 0)


def compute(experiment) -> Summary:
    """All the figures, from one consistent snapshot of the database."""
    t0 = time.perf_counter()
    with snapshot():
        st = stamp(experiment)
        stim = analysis._stimulus_table(experiment)
        choices = analysis.choice_counts(experiment)
        counts = analysis.trial_counts(experiment, choices=choices)
        ag = analysis.agreement(experiment, counts=counts)
        out = Summary(
            stamp=st,
            computed_at=timezone.now(),
            seconds=0.0,
            progress=analysis.progress(experiment, counts=counts),
            qc=list(compute_qc(experiment).values()),
            rules=qc_rules(experiment),
            win_rates=analysis.win_rates(experiment, choices=choices, stim=stim),
            scale=jod_scales.per_setting(experiment),
            agreement=ag,
            metrics=analysis.metric_agreement(experiment, counts=counts, stim=stim, ag=ag),
            coverage=analysis.coverage(experiment, counts=counts),
            timeline=analysis.judgments_over_time(experiment),
        )
    out.seconds = time.perf_counter() - t0
    return out


def _key(experiment_id: int) -> str:
    return f"lab:summary:v{VERSION}:{experiment_id}"


def _queued_key(experiment_id: int) -> str:
    return f"lab:summary:v{VERSION}:{experiment_id}:queued"


def shared_cache() -> bool:
    """Whether the cache is seen by other processes (the task worker): not LocMem, not the dummy."""
    return not isinstance(caches["default"], LocMemCache | DummyCache)


def store(experiment_id: int, summary: Summary) -> None:
    """Keep ``summary`` as the study's latest, unless a newer one (more judgments) is already stored."""
    old = cache.get(_key(experiment_id))
    if old is None or _order(summary.stamp) >= _order(old.stamp):
        cache.set(_key(experiment_id), summary, CACHE_TIMEOUT)


def _order(st: Stamp) -> tuple:
    # erasures first: after one, the counts and highest ids may be lower and the summary still newer
    return (st.erasures, st.last_judgment or 0, st.judgments, st.last_participant or 0, st.participants)


def forget(experiment_id: int) -> None:
    """Drop the study's stored summary (after an erasure: its QC rows name the erased participant), so the
    next page computes it afresh instead of showing the old one, even briefly, as stale."""
    cache.delete(_key(experiment_id))


def get_summary(experiment) -> Summary:
    """The study's summary: stored and fresh, computed now, or stored and stale with a background
    recomputation queued (``Summary.stale``); see the module's docstring."""
    current = stamp(experiment)
    stored = cache.get(_key(experiment.pk))
    if stored is not None and stored.stamp == current:
        return stored
    if stored is not None and current.judgments > INLINE_MAX:
        if shared_cache():
            if cache.add(_queued_key(experiment.pk), timezone.now().isoformat(), QUEUED_TIMEOUT):
                refresh_summary.enqueue(experiment.pk)
            stored.stale = True
            return stored
        if (timezone.now() - stored.computed_at).total_seconds() < LOCAL_MAX_AGE:
            stored.stale = True
            return stored
    fresh = compute(experiment)
    store(experiment.pk, fresh)
    return fresh


def refreshing(experiment) -> bool:
    """Whether a background recomputation of the study's summary is queued or running."""
    return cache.get(_queued_key(experiment.pk)) is not None


@task()
def refresh_summary(experiment_id: int) -> dict:
    """Recompute and store the summary of experiment ``experiment_id`` (run by the task worker); returns the
    judgments it counted and the seconds it took."""
    try:
        exp = Experiment.objects.get(pk=experiment_id)
        summary = compute(exp)
        store(exp.pk, summary)
    finally:
        cache.delete(_queued_key(experiment_id))
    return {"judgments": summary.judgments, "seconds": round(summary.seconds, 3)}
