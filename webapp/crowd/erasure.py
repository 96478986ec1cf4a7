"""Participants' rights: erasing a participant from a study, and forgetting platform ids after a while.

``erase_participant`` is the one place where judgments are deleted (the judgment table is append-only
otherwise): a participant's withdrawal on the task page, or a researcher's erasure (``manage.py
erase_participant``, the study page, the REST API). One transaction, under the experiment's row lock (the
lock ``assign.py`` takes, so the trial slot counts stay right): the participant's assignments are locked
first, so a judgment being stored for them either commits before and is erased too, or waits and then
finds them gone; then judgments, items, assignments and the participant are deleted in the order their
protecting foreign keys need, the worker id of the study's recruiting decisions is blanked, an ``Erasure``
record is written (nothing personal in it) and the slot counts are recounted from the items left, so the
trials the participant held are offered again. After the commit the study's cached summary and this
process's active-sampling posterior are dropped (other processes rebuild theirs within a minute).

``erase_platform_ids`` replaces the platform ids of participants whose last assignment is older than a
number of days by random values (``CROWD_ERASE_PLATFORM_IDS_AFTER_DAYS``, run by ``manage.py
erase_platform_ids`` from a timer): the judgments stay, the pseudonym that links them to a platform
account goes.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from webapp.crowd.models import Assignment, AssignmentItem, Erasure, Participant
from webapp.experiments.models import Experiment

ERASED_PREFIX = "erased:"  # platform ids written by erase_platform_ids (no platform issues ids like it)
RETENTION_SETTING = "CROWD_ERASE_PLATFORM_IDS_AFTER_DAYS"


class NotErasable(LookupError):
    """No such participant in this study (unknown, already erased, or another study's)."""


def erase_participant(participant_id: int, experiment: Experiment, *, kind: str, via: str, by=None,
                      reason: str = "") -> Erasure:
    """Delete participant ``participant_id`` of ``experiment`` with every assignment, item and judgment of
    theirs, and return the ``Erasure`` record written instead (``kind``: Erasure.WITHDRAWAL or ERASURE;
    ``via``: one of Erasure.VIA; ``by``: the researcher, if any). All or nothing, in one transaction.
    Raises NotErasable, changing nothing, when the study has no such participant (also a second call)."""
    from webapp.crowd.assign import recount_slots
    from webapp.crowd.models import Judgment

    with transaction.atomic():
        exp = Experiment.objects.select_for_update().get(pk=experiment.pk)
        p = Participant.objects.select_for_update().filter(pk=participant_id, experiment=exp).first()
        if p is None:
            raise NotErasable(f"no participant {participant_id} in study {exp.slug!r}")
        assignment_ids = list(Assignment.objects.select_for_update().filter(participant=p)
                              .values_list("pk", flat=True))
        # Judgment -> item and Judgment -> assignment are PROTECT: the judgments go first, then the rest.
        judgments, _ = Judgment.objects.filter(assignment_id__in=assignment_ids).delete()
        AssignmentItem.objects.filter(assignment_id__in=assignment_ids).delete()
        Assignment.objects.filter(pk__in=assignment_ids).delete()
        _blank_decisions(exp.pk, p.platform, [p.platform_id])
        p.delete()
        record = Erasure.objects.create(
            experiment=exp, kind=kind, via=via, by=by, reason=reason[:2000], judgments=judgments,
            assignments=len(assignment_ids), simulated=p.platform == Participant.SIMULATED)
        recount_slots(exp)
        transaction.on_commit(lambda: forget_cached(exp.pk))
    return record


def _blank_decisions(experiment_id: int, platform: str, worker_ids: list[str]) -> None:
    """Blank the worker id on the study's recruiting decisions (approvals, bonuses) for these workers; the
    submission id stays, as the record that a decision was sent once."""
    from webapp.recruit.models import Decision

    Decision.objects.filter(experiment_id=experiment_id, platform=platform,
                            worker_id__in=worker_ids).update(worker_id="")


def forget_cached(experiment_id: int) -> None:
    """Drop what is cached from the study's judgments: the dashboard's summary (Django's cache, shared by
    every process) and this process's active-sampling posterior."""
    from webapp.crowd import active
    from webapp.lab.summary import forget

    forget(experiment_id)
    active.forget(experiment_id)


def text_problem(value: str) -> str | None:
    """What keeps ``value`` (a command-line argument) from being looked up or stored as text, or None:
    bytes that are not UTF-8 reach sys.argv as lone surrogates, which have no UTF-8 form; NUL."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid UTF-8 text (at character {exc.start + 1})"
    return "contains a NUL character" if "\x00" in value else None


def retention_days() -> int:
    """``CROWD_ERASE_PLATFORM_IDS_AFTER_DAYS`` (settings, from the environment); 0 = off."""
    value = getattr(settings, RETENTION_SETTING)
    try:
        days = int(value)
    except ValueError:
        raise ValueError(f"{RETENTION_SETTING}: expected a whole number of days, got {value!r}") from None
    if days < 0:
        raise ValueError(f"{RETENTION_SETTING}: expected 0 (off) or a positive number of days, got {days}")
    return days


def stale_participants(days: int, now: datetime | None = None):
    """Participants whose platform ids are still stored although they were created, and their last
    assignment taken, more than ``days`` days ago, and who have no assignment still open."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    recent = Assignment.objects.filter(participant=OuterRef("pk")).filter(
        Q(created__gte=cutoff) | Q(state="active", expires_at__gt=now))
    return (Participant.objects.filter(ids_erased_at__isnull=True, created__lt=cutoff)
            .exclude(Exists(recent)))


def erase_platform_ids(days: int, now: datetime | None = None, batch: int = 500) -> int:
    """Replace the platform id of every ``stale_participants(days)`` by a random one (``erased:`` + 32 hex
    digits: unique, so the (experiment, platform, platform_id) constraint holds), empty their study and
    session ids, the MTurk assignment ids and return addresses of their assignments and the worker id of
    their recruiting decisions; in one transaction. Returns how many participants were changed."""
    now = now or timezone.now()
    changed = 0
    touched: set[int] = set()
    with transaction.atomic():
        rows = list(stale_participants(days, now).select_for_update()
                    .values_list("pk", "experiment_id", "platform", "platform_id"))
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            people = [Participant(pk=pk, platform_id=f"{ERASED_PREFIX}{uuid.uuid4().hex}", study_id="",
                                  session_id="", ids_erased_at=now) for pk, *_ in chunk]
            Participant.objects.bulk_update(people, ["platform_id", "study_id", "session_id",
                                                     "ids_erased_at"])
            Assignment.objects.filter(participant_id__in=[pk for pk, *_ in chunk]).update(
                mturk_assignment_id="", turk_submit_to="")
            by_study: dict[tuple[int, str], list[str]] = {}
            for _, exp_id, platform, old in chunk:
                by_study.setdefault((exp_id, platform), []).append(old)
            for (exp_id, platform), olds in by_study.items():
                _blank_decisions(exp_id, platform, olds)
                touched.add(exp_id)
            changed += len(chunk)
        for exp_id in touched:  # the summary's QC rows carry platform ids
            transaction.on_commit(lambda e=exp_id: forget_cached(e))
    return changed
