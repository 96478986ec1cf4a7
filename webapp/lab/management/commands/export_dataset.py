"""``python manage.py export_dataset EXPERIMENT --out DIR [--exclude-flagged] [--include-simulated]
[--force]``."""

from django.core.management.base import BaseCommand, CommandError

from webapp.experiments.models import Experiment
from webapp.lab.export import ExportError, export_experiment


class Command(BaseCommand):
    help = (
        "Export an experiment as a BAPPS-layout dataset (<split>/<slug>/{ref,p0,p1,judge,judge_n}) "
        "with the raw judgment log (CSV + JSONL) and manifest.json. Refuses a non-empty DIR unless --force."
    )

    def add_arguments(self, parser):
        parser.add_argument("experiment", help="experiment slug")
        parser.add_argument("--out", required=True, help="output directory (created if missing)")
        parser.add_argument("--exclude-flagged", action="store_true",
                            help="leave out participants flagged by QC (judge fractions and log)")
        parser.add_argument("--include-simulated", action="store_true",
                            help="keep simulated participants (simulate_crowd; left out by default)")
        parser.add_argument("--force", action="store_true", help="write into a non-empty directory")

    def handle(self, *args, **opts):
        try:
            exp = Experiment.objects.get(slug=opts["experiment"])
        except Experiment.DoesNotExist:
            raise CommandError(f"unknown experiment {opts['experiment']!r}") from None
        try:
            m = export_experiment(exp, opts["out"], exclude_flagged=opts["exclude_flagged"],
                                  force=opts["force"], progress=opts["verbosity"] >= 1,
                                  include_simulated=opts["include_simulated"])
        except ExportError as e:
            raise CommandError(str(e)) from None
        c = m["counts"]
        self.stdout.write(
            f"exported {c['triplets_total']} triplets ({c['judgments_in_triplets']} judgments), "
            f"{c['judgments_in_log']} log rows, {c['participants_excluded']} participants excluded "
            f"to {opts['out']}"
        )
