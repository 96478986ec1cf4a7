"""``python manage.py erase_platform_ids [--days N] [--dry-run]``: forget old platform ids (run from a
timer; ``webapp/crowd/erasure.py``)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from webapp.crowd.erasure import RETENTION_SETTING, erase_platform_ids, retention_days, stale_participants


class Command(BaseCommand):
    help = (
        "Replace the platform ids (Prolific PID, MTurk WorkerId, ...) of participants whose last "
        "assignment is older than N days by random values, keeping their judgments. N: --days, else "
        f"{RETENTION_SETTING} (unset or 0: off, and the command does nothing)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, metavar="N",
                            help=f"age in days (default: the {RETENTION_SETTING} setting)")
        parser.add_argument("--dry-run", action="store_true", help="only count the participants concerned")

    def handle(self, *args, **o):
        try:
            days = o["days"] if o["days"] is not None else retention_days()
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if days < 0:
            raise CommandError("--days: expected a positive number of days")
        if days == 0:
            self.stdout.write(f"off: {RETENTION_SETTING} is not set (or --days 0); nothing was changed")
            return
        if o["dry_run"]:
            n = stale_participants(days).count()
            self.stdout.write(f"{n} participant(s) last seen over {days} days ago still have platform ids")
            return
        n = erase_platform_ids(days)
        self.stdout.write(f"replaced the platform ids of {n} participant(s) last seen over {days} days ago")
