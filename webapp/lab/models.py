"""Background exports: one row per export asked for on the dashboard or the API (``jobs.py`` builds it)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from webapp.experiments.models import Experiment


class ExportJob(models.Model):
    """An export of ``experiment`` built by the task worker (``manage.py db_worker``) into
    ``MEDIA_ROOT/exports/<id>.zip``; ``stage``, ``done`` and ``total`` say how far it is."""

    STATES = [("queued", "queued"), ("running", "running"), ("done", "done"), ("failed", "failed")]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="export_jobs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                     related_name="+")
    exclude_flagged = models.BooleanField(default=False)
    include_simulated = models.BooleanField(default=False)
    state = models.CharField(max_length=10, choices=STATES, default="queued")
    stage = models.CharField(max_length=40, blank=True)
    done = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    file = models.CharField(max_length=300, blank=True)  # relative to MEDIA_ROOT
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"export {self.id} of {self.experiment_id} ({self.state})"

    @property
    def percent(self) -> int:
        """How far the export is, 0-100."""
        if self.state == "done":
            return 100
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def filename(self) -> str:
        """The zip's download name."""
        suffix = ("-excl" if self.exclude_flagged else "") + ("-sim" if self.include_simulated else "")
        return f"{self.experiment.slug}{suffix}.zip"
