"""The site's status changes carried to the platforms: a study that goes live, is paused or closed here
is published, paused or stopped on Prolific too (an MTurk HIT has no pause: while the study is not live
the site itself turns its workers away); and erased workers' ids blanked on the recruiting decisions."""

from __future__ import annotations

from django.dispatch import receiver

from webapp.crowd.models import Participant
from webapp.crowd.signals import worker_ids_erased
from webapp.experiments.models import Experiment
from webapp.experiments.signals import status_changing
from webapp.recruit import prolific
from webapp.recruit.models import Decision


@receiver(status_changing, sender=Experiment, dispatch_uid="recruit.prolific_status")
def prolific_status(sender, experiment: Experiment, status: str, **kwargs) -> str | None:
    """Publish / pause / stop the linked Prolific study before the change is saved; a ProlificError vetoes
    the change (the study then keeps its status here, as it does there). Returns what was done there."""
    if prolific.linked_study(experiment) is None:
        return None
    done = prolific.sync_status(experiment, status, prolific.client_from_env())
    return f"Prolific: {done}" if done else None


@receiver(worker_ids_erased, sender=Participant, dispatch_uid="recruit.blank_decisions")
def blank_decisions(sender, experiment_id: int, platform: str, worker_ids: list[str], **kwargs) -> None:
    """Blank the worker id on the study's recruiting decisions (approvals, bonuses) for erased workers; the
    submission id stays, as the record that a decision was sent once."""
    Decision.objects.filter(experiment_id=experiment_id, platform=platform,
                            worker_id__in=worker_ids).update(worker_id="")
