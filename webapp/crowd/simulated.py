"""Simulated participants (platform ``simulated``): marking them and telling them apart from real ones."""

from __future__ import annotations

from webapp.crowd.models import Participant

SIMULATED = Participant.SIMULATED


def mark_simulated(token: str) -> int:
    """Mark the participant holding assignment ``token`` as simulated; returns the rows changed (0 if the
    token is unknown to this database)."""
    return Participant.objects.filter(assignments__token=token).update(platform=SIMULATED)


def simulated_ids(experiment) -> set[int]:
    """Pks of the experiment's simulated participants."""
    rows = Participant.objects.filter(experiment=experiment, platform=SIMULATED)
    return set(rows.values_list("pk", flat=True))


def real_participants(experiment):
    """The experiment's participants that are not simulated (a queryset)."""
    return Participant.objects.filter(experiment=experiment).exclude(platform=SIMULATED)
