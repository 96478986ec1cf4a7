"""``python manage.py erase_participant SLUG --platform-id ID [--platform NAME] [--reason TEXT]``: erase one
participant of a study (``webapp/crowd/erasure.py``)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from webapp.crowd.erasure import NotErasable, erase_participant, text_problem
from webapp.crowd.models import Erasure, Participant
from webapp.experiments.models import Experiment


class Command(BaseCommand):
    help = (
        "Erase a participant of a study: their judgments, assignments and ids are deleted in one "
        "transaction, the trials they held are offered again, and an erasure record (when, why, how many "
        "judgments; nothing personal) is kept and counted in later exports. Earlier exports and backups "
        "are not changed."
    )

    def add_arguments(self, parser):
        parser.add_argument("experiment", help="experiment slug")
        parser.add_argument("--platform-id", required=True, metavar="ID",
                            help="the participant's id on the platform (Prolific PID, MTurk WorkerId, ...)")
        parser.add_argument("--platform", default=None, metavar="NAME",
                            help="the participant's platform, when the id is found on two (e.g. simulated)")
        parser.add_argument("--reason", default="", help="why (kept in the erasure record)")

    def handle(self, *args, **o):
        for name in ("experiment", "platform_id", "platform", "reason"):
            problem = text_problem(o[name] or "")
            if problem:
                raise CommandError(f"--{name.replace('_', '-')}: {problem}; nothing was erased")
        try:
            exp = Experiment.objects.get(slug=o["experiment"])
        except Experiment.DoesNotExist:
            raise CommandError(f"unknown experiment {o['experiment']!r}; nothing was erased") from None
        found = Participant.objects.filter(experiment=exp, platform_id=o["platform_id"])
        if o["platform"]:
            found = found.filter(platform=o["platform"])
        rows = list(found.values_list("pk", "platform"))
        if not rows:
            raise CommandError(f"study {exp.slug!r} has no participant with this platform id "
                               "(unknown, or erased already); nothing was erased")
        if len(rows) > 1:
            raise CommandError("this id is a participant on " + ", ".join(sorted(p for _, p in rows))
                               + ": choose one with --platform; nothing was erased")
        try:
            record = erase_participant(rows[0][0], exp, kind=Erasure.ERASURE, via="command",
                                       reason=o["reason"])
        except NotErasable:  # erased in between by someone else
            raise CommandError("the participant was erased in the meantime; nothing more was erased"
                               ) from None
        self.stdout.write(f"erased a participant of {exp.slug}: {record.judgments} judgment(s), "
                          f"{record.assignments} assignment(s); erasure record {record.pk} kept")
