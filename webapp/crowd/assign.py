"""Building an assignment: which trials a new participant gets, in which order, on which side.

Concurrency: the whole pick runs in one transaction holding ``SELECT ... FOR UPDATE`` on the experiment
row, so concurrent arrivals are serialised per experiment and each sees the slots the previous one took.
Balancing ranks the normal trials by the slots they hold (``TrialSlots``: first showings in active or
completed assignments plus judged ones in expired assignments). The counters are changed only under that
lock, by ``create_assignment`` and ``expire``, so taking an assignment reads one row per trial instead of
counting every item of the experiment (which grew with each participant: 300 ms at 1,000 assignments).
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import TypeVar

from django.db import transaction
from django.db.models import Case, Count, Exists, F, IntegerField, OuterRef, Q, Value, When
from django.utils import timezone

from webapp.crowd.active import choose_trials
from webapp.crowd.models import Assignment, AssignmentItem, Participant, TrialSlots
from webapp.experiments.models import Experiment, Trial
from webapp.experiments.sampling import sampling_mode

T = TypeVar("T")  # a trial, by id (assignments) or as a Trial (the preview)


def _lock(experiment_id: int) -> Experiment:
    return Experiment.objects.select_for_update().get(pk=experiment_id)


def _add_slots(counts: dict[int, int]) -> None:
    """Add ``counts[trial_id]`` (may be negative) to the trials' held slots, in one statement."""
    counts = {t: n for t, n in counts.items() if n}
    if counts:
        whens = [When(trial_id=t, then=Value(n)) for t, n in counts.items()]
        delta = Case(*whens, output_field=IntegerField())
        TrialSlots.objects.filter(trial_id__in=counts).update(held=F("held") + delta)


def count_slots(experiment: Experiment) -> dict[int, int]:
    """Normal trial id -> slots held, counted from the items (one statement, one consistent snapshot):
    every first-showing slot of an active or completed assignment, plus the judged slots of expired ones.
    The reference for ``TrialSlots``; its cost grows with the experiment's items."""
    load = dict.fromkeys(
        Trial.objects.filter(experiment=experiment, kind="normal").values_list("id", flat=True), 0
    )
    rows = (
        AssignmentItem.objects.filter(
            assignment__experiment=experiment, trial__kind="normal", is_repeat=False
        )
        .filter(Q(assignment__state__in=["active", "completed"]) | Q(judgment__isnull=False))
        .values("trial")
        .annotate(n=Count("id"))
    )
    for row in rows:
        load[row["trial"]] += row["n"]
    return load


def recount_slots(experiment: Experiment) -> dict[int, int]:
    """Set every normal trial's ``TrialSlots`` to ``count_slots`` (under the experiment lock); returns it."""
    with transaction.atomic():
        _lock(experiment.pk)
        load = count_slots(experiment)
        TrialSlots.objects.bulk_create(
            [TrialSlots(trial_id=t, held=n) for t, n in load.items()],
            update_conflicts=True,
            unique_fields=["trial"],
            update_fields=["held"],
        )
        return load


def _overdue(experiment_id: int):
    """The experiment's active assignments past their expiry time."""
    return Assignment.objects.filter(Assignment.overdue_q(timezone.now()), experiment_id=experiment_id)


def expire(experiment_id: int, assignment_ids: list[int] | None = None) -> int:
    """Mark overdue active assignments of the experiment (all, or only ``assignment_ids``) expired and give
    their unjudged slots back to the pool; returns how many were expired."""
    with transaction.atomic():
        _lock(experiment_id)
        return _expire_locked(experiment_id, assignment_ids)


def _expire_locked(experiment_id: int, assignment_ids: list[int] | None = None) -> int:
    """``expire`` for a caller that holds the experiment's row lock (inside its transaction)."""
    qs = _overdue(experiment_id)
    if assignment_ids is not None:
        qs = qs.filter(pk__in=assignment_ids)
    ids = list(qs.values_list("pk", flat=True))
    if not ids:
        return 0
    Assignment.objects.filter(pk__in=ids).update(state="expired")
    back = (
        AssignmentItem.objects.filter(
            assignment_id__in=ids, is_repeat=False, trial__kind="normal", judgment__isnull=True
        )
        .values("trial")
        .annotate(n=Count("id"))
    )
    _add_slots({row["trial"]: -row["n"] for row in back})
    return len(ids)


def expire_stale(experiment: Experiment) -> int:
    """Expire every overdue active assignment of ``experiment`` (their open slots return to the pool)."""
    return expire(experiment.pk)


def locked_for_entry():
    """Experiments, each read with its row lock (inside a transaction) and ``has_overdue``: whether any of
    its active assignments is past its expiry time. What ``create_assignment`` starts from."""
    overdue = Assignment.objects.filter(Assignment.overdue_q(timezone.now()), experiment=OuterRef("pk"))
    return Experiment.objects.select_for_update().annotate(has_overdue=Exists(overdue))


def plan_sequence(exp: Experiment, chosen: list[T], sentinels: list[T], practice: list[T], rng: random.Random
                  ) -> list[tuple[T, bool, bool, bool]]:
    """The items of an assignment in showing order, as ``(trial, is_repeat, is_practice, left_is_a)``: the
    study's practice trials first, then ``chosen`` in its order with sentinels inserted at random and planned
    repeats (``exp.sentinel_rate``, ``exp.repeat_rate``) each placed after its first showing. The side of a
    first showing is drawn, a repeat shows the sides swapped. ``assign`` and the preview both plan with it."""
    sequence: list[tuple[T, bool, bool]] = [(t, False, False) for t in chosen]  # trial, repeat, practice
    n_sent = min(round(exp.sentinel_rate * len(chosen)), len(sentinels))
    for i in range(n_sent):
        sequence.insert(rng.randint(1, len(sequence)), (sentinels[i % len(sentinels)], False, False))
    n_rep = min(round(exp.repeat_rate * len(chosen)), len(chosen))
    for t in rng.sample(chosen, n_rep):
        first = next(i for i, s in enumerate(sequence) if s[0] == t)
        sequence.insert(rng.randint(first + 1, len(sequence)), (t, True, False))
    n_practice = exp.practice_trials if practice else 0
    sequence = [(practice[i % len(practice)], False, True) for i in range(n_practice)] + sequence
    first_side: dict[T, bool] = {}
    out = []
    for trial, is_repeat, is_practice in sequence:
        if is_repeat:
            left_is_a = not first_side[trial]  # a repeat shows the sides swapped
        else:
            left_is_a = rng.random() < 0.5
            first_side.setdefault(trial, left_is_a)
        out.append((trial, is_repeat, is_practice, left_is_a))
    return out


def create_assignment(experiment_id: int, participant: Participant, locked: Experiment | None = None,
                      **extra) -> Assignment:
    """Create the participant's assignment: practice first, then normal trials with sentinels and repeats.

    ``locked``: the experiment as read by ``locked_for_entry`` in the caller's transaction (which then
    holds its lock), else it is read and locked here. ``extra`` sets Assignment fields such as
    ``mturk_assignment_id``. Raises ``LookupError`` when the experiment has no normal trials left for
    this participant.
    """
    with transaction.atomic(savepoint=False):
        # the lock, and whether any assignment is overdue (their slots go back first), in one statement
        exp = locked or locked_for_entry().get(pk=experiment_id)
        if exp.has_overdue:
            _expire_locked(exp.pk)
        # every trial with its held slots and whether this participant had it already (no repeats across
        # a participant's assignments), in one statement
        had = AssignmentItem.objects.filter(assignment__participant=participant, trial=OuterRef("pk"))
        rows = list(Trial.objects.filter(experiment=exp).annotate(seen=Exists(had))
                    .values_list("id", "kind", "slots__held", "seen"))
        seen = {t for t, _, _, was_seen in rows if was_seen}
        trials = [(t, kind, held) for t, kind, held, _ in rows]
        if any(kind == "normal" and held is None for _, kind, held in trials):
            held_by = recount_slots(exp)  # trials added since the last count (or data from before it)
        else:
            held_by = {t: held for t, kind, held in trials if kind == "normal"}
        load = {t: n for t, n in held_by.items() if t not in seen}
        if not load:
            raise LookupError("no trials left for this participant")
        rng = random.Random()
        if sampling_mode(exp) == "active":  # from the JOD posterior (webapp.crowd.active)
            chosen = choose_trials(exp.pk, load, exp.trials_per_assignment, rng)
        else:
            order = sorted(load, key=lambda t: (load[t], rng.random()))
            chosen = order[: exp.trials_per_assignment]
        rng.shuffle(chosen)
        sentinels = [t for t, kind, _ in trials if kind == "sentinel"]
        practice = [t for t, kind, _ in trials if kind == "practice"]
        sequence = plan_sequence(exp, chosen, sentinels, practice, rng)
        now = timezone.now()
        assignment = Assignment.objects.create(
            participant=participant,
            experiment=exp,
            state="active",
            expires_at=now + timedelta(minutes=exp.assignment_timeout_minutes),
            **extra,
        )
        items = [
            AssignmentItem(assignment=assignment, position=pos, trial_id=trial_id, is_repeat=is_repeat,
                           is_practice=is_practice, left_is_a=left_is_a)
            for pos, (trial_id, is_repeat, is_practice, left_is_a) in enumerate(sequence)
        ]
        AssignmentItem.objects.bulk_create(items)
        TrialSlots.objects.filter(trial_id__in=chosen).update(held=F("held") + 1)
        return assignment
