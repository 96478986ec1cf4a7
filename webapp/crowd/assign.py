"""Building an assignment: which trials a new participant gets, in which order, on which side.

Concurrency: the whole pick runs in one transaction holding ``SELECT ... FOR UPDATE`` on the experiment
row, so concurrent arrivals are serialised per experiment and each sees the slots the previous one took.
The fewest-(judgments + open slots) rule is counted with two grouped queries over this experiment only.
"""

from __future__ import annotations

import random
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from webapp.crowd.models import Assignment, AssignmentItem, Participant
from webapp.experiments.models import Experiment, Trial


def expire_stale(experiment: Experiment) -> int:
    """Mark active assignments past their deadline as expired (their open slots return to the pool)."""
    return Assignment.objects.filter(
        experiment=experiment, state="active", expires_at__lt=timezone.now()
    ).update(state="expired")


def _load(experiment: Experiment, exclude: set[int]) -> dict[int, int]:
    """Normal trial id -> judgments made + open slots held by active assignments.

    One statement (one consistent snapshot): every first-showing slot of an active or completed
    assignment, plus the judged slots of expired ones (their unjudged slots went back to the pool).
    """
    normal = Trial.objects.filter(experiment=experiment, kind="normal").values_list("id", flat=True)
    load = {t: 0 for t in normal if t not in exclude}
    rows = (
        AssignmentItem.objects.filter(
            assignment__experiment=experiment, trial__kind="normal", is_repeat=False
        )
        .filter(Q(assignment__state__in=["active", "completed"]) | Q(judgment__isnull=False))
        .values("trial")
        .annotate(n=Count("id"))
    )
    for row in rows:
        if row["trial"] in load:
            load[row["trial"]] += row["n"]
    return load


def create_assignment(experiment_id: int, participant: Participant, **extra) -> Assignment:
    """Create the participant's assignment: practice first, then normal trials with sentinels and repeats.

    ``extra`` sets Assignment fields such as ``mturk_assignment_id``. Raises ``LookupError`` when the
    experiment has no normal trials left for this participant.
    """
    with transaction.atomic():
        exp = Experiment.objects.select_for_update().get(pk=experiment_id)
        expire_stale(exp)
        seen = set(
            AssignmentItem.objects.filter(assignment__participant=participant).values_list(
                "trial_id", flat=True
            )
        )
        load = _load(exp, seen)
        if not load:
            raise LookupError("no trials left for this participant")
        rng = random.Random()
        order = sorted(load, key=lambda t: (load[t], rng.random()))
        chosen = order[: exp.trials_per_assignment]
        rng.shuffle(chosen)
        sequence: list[tuple[int, bool, bool]] = [
            (t, False, False) for t in chosen
        ]  # trial, repeat, practice
        sentinels = list(Trial.objects.filter(experiment=exp, kind="sentinel").values_list("id", flat=True))
        n_sent = min(round(exp.sentinel_rate * len(chosen)), len(sentinels))
        for i in range(n_sent):
            sequence.insert(rng.randint(1, len(sequence)), (sentinels[i % len(sentinels)], False, False))
        n_rep = min(round(exp.repeat_rate * len(chosen)), len(chosen))
        for t in rng.sample(chosen, n_rep):
            first = next(i for i, s in enumerate(sequence) if s[0] == t)
            sequence.insert(rng.randint(first + 1, len(sequence)), (t, True, False))
        practice = list(Trial.objects.filter(experiment=exp, kind="practice").values_list("id", flat=True))
        practice_seq = [
            (practice[i % len(practice)], False, True) for i in range(exp.practice_trials if practice else 0)
        ]
        sequence = practice_seq + sequence
        now = timezone.now()
        assignment = Assignment.objects.create(
            participant=participant,
            experiment=exp,
            state="active",
            expires_at=now + timedelta(minutes=exp.assignment_timeout_minutes),
            **extra,
        )
        first_side: dict[int, bool] = {}
        items = []
        for pos, (trial_id, is_repeat, is_practice) in enumerate(sequence):
            if is_repeat:
                left_is_a = not first_side[trial_id]  # a repeat shows the sides swapped
            else:
                left_is_a = rng.random() < 0.5
                first_side.setdefault(trial_id, left_is_a)
            items.append(
                AssignmentItem(
                    assignment=assignment,
                    position=pos,
                    trial_id=trial_id,
                    is_repeat=is_repeat,
                    is_practice=is_practice,
                    left_is_a=left_is_a,
                )
            )
        AssignmentItem.objects.bulk_create(items)
        return assignment
