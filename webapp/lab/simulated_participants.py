"""Simulated participants (platform ``simulated``) told apart from real ones: what exports, plans and the
dashboard leave out or show apart."""

from __future__ import annotations

from webapp.crowd.models import Participant

SIMULATED = Participant.SIMULATED


def simulated_ids(experiment) -> set[int]:
    """Pks of the experiment's simulated participants."""
    rows = Participant.objects.filter(experiment=experiment, platform=SIMULATED)
    return set(rows.values_list("pk", flat=True))


def real_participants(experiment):
    """The experiment's participants that are not simulated (a queryset)."""
    return Participant.objects.filter(experiment=experiment).exclude(platform=SIMULATED)
