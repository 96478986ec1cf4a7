"""Exports as background tasks (django-tasks, database backend): the dashboard and the API ask for one
(``start_export``), the task worker (``manage.py db_worker``) builds it (``build_export``) into
``MEDIA_ROOT/exports/<id>.zip``, writing its progress to the ``ExportJob`` row as it goes; no web worker is
held while a large study is exported. ``manage.py export_dataset`` stays synchronous."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.http import FileResponse, Http404, HttpResponse
from django.utils import timezone
from django_tasks import task

from webapp.lab.export import export_zip
from webapp.lab.models import ExportJob

EXPORT_DIR = "exports"


def start_export(experiment, user, exclude_flagged: bool = False, include_simulated: bool = False
                 ) -> ExportJob:
    """Record an export of ``experiment`` and queue its task (a row in the same database: the worker sees
    the task only with its job)."""
    job = ExportJob.objects.create(experiment=experiment, requested_by=user, exclude_flagged=exclude_flagged,
                                   include_simulated=include_simulated)
    build_export.enqueue(str(job.id))
    return job


def zip_path(job: ExportJob) -> Path:
    """Where the finished zip of ``job`` lies."""
    return Path(settings.MEDIA_ROOT) / job.file


def zip_response(job: ExportJob) -> HttpResponse:
    """The finished zip of ``job``; 409 while it is being built, 500 with the error if it failed."""
    if job.state == "failed":
        return HttpResponse(f"export failed: {job.error}\n", status=500, content_type="text/plain")
    if job.state != "done":
        return HttpResponse(f"export {job.state} ({job.percent} %)\n", status=409, content_type="text/plain")
    try:
        f = zip_path(job).open("rb")
    except FileNotFoundError:
        raise Http404("export file removed") from None
    return FileResponse(f, as_attachment=True, filename=job.filename, content_type="application/zip")


class _ProgressWriter:
    """Writes an export's progress on a database connection of its own: the export reads inside one
    read-only transaction, which cannot write. At most every ``every`` seconds; a write that fails (SQLite
    locks the file while the export reads) is skipped, since the next one says more anyway."""

    def __init__(self, job_id: uuid.UUID, every: float = 0.5) -> None:
        self.job_id, self.every, self.last = job_id, every, 0.0
        self.db = connections.create_connection(DEFAULT_DB_ALIAS)

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < self.every and done:
            return
        self.last = now
        try:
            with self.db.cursor() as cur:
                cur.execute(f"UPDATE {ExportJob._meta.db_table} SET stage = %s, done = %s, total = %s "
                            "WHERE id = %s",
                            [stage, done, total, ExportJob._meta.pk.get_db_prep_value(self.job_id, self.db)])
        except DatabaseError:
            pass

    def close(self) -> None:
        self.db.close()


@task()
def build_export(job_id: str) -> str:
    """Build the export of job ``job_id`` (run by the task worker); returns the zip's path under
    MEDIA_ROOT. A failure is recorded on the job (state ``failed``, the error) and raised."""
    job = ExportJob.objects.select_related("experiment").get(pk=job_id)
    ExportJob.objects.filter(pk=job.pk).update(state="running", stage="starting")
    rel = f"{EXPORT_DIR}/{job.id}.zip"
    final = Path(settings.MEDIA_ROOT) / rel
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_suffix(".zip.part")
    progress = _ProgressWriter(job.id)
    try:
        with open(partial, "wb") as f:
            export_zip(job.experiment, exclude_flagged=job.exclude_flagged,
                       include_simulated=job.include_simulated, zf=f, on_progress=progress)
        partial.rename(final)  # a zip is offered only once it is whole
    except Exception as exc:
        partial.unlink(missing_ok=True)
        ExportJob.objects.filter(pk=job.pk).update(state="failed", error=f"{type(exc).__name__}: {exc}",
                                                   finished=timezone.now())
        raise
    finally:
        progress.close()
    ExportJob.objects.filter(pk=job.pk).update(state="done", stage="done", file=rel, finished=timezone.now())
    return rel
