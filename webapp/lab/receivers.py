"""What the lab does when the crowd side changes the data it summarises."""

from __future__ import annotations

from django.dispatch import receiver

from webapp.crowd.models import Participant
from webapp.crowd.signals import data_erased
from webapp.lab.summary import forget


@receiver(data_erased, sender=Participant, dispatch_uid="lab.forget_summary")
def forget_summary(sender, experiment_id: int, **kwargs) -> None:
    """Drop the study's cached summary (Django's cache, shared by every process): its QC rows carry
    platform ids, and its counts the judgments."""
    forget(experiment_id)
