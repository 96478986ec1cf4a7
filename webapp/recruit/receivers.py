"""The site's status changes carried to the platforms: a study that goes live, is paused or closed here
is published, paused or stopped on Prolific too (an MTurk HIT has no pause: while the study is not live
the site itself turns its workers away)."""

from __future__ import annotations

from django.dispatch import receiver

from webapp.experiments.models import Experiment
from webapp.experiments.signals import status_changing
from webapp.recruit import prolific


@receiver(status_changing, sender=Experiment, dispatch_uid="recruit.prolific_status")
def prolific_status(sender, experiment: Experiment, status: str, **kwargs) -> str | None:
    """Publish / pause / stop the linked Prolific study before the change is saved; a ProlificError vetoes
    the change (the study then keeps its status here, as it does there). Returns what was done there."""
    if prolific.linked_study(experiment) is None:
        return None
    done = prolific.sync_status(experiment, status, prolific.client_from_env())
    return f"Prolific: {done}" if done else None
