"""``python manage.py plan_study SLUG --ci-width 0.5 [--exclude-flagged] [--real-only] [--n-boot N]``."""

from django.core.management.base import BaseCommand, CommandError

from learning.scaling.plan import plan
from webapp.experiments.models import Experiment
from webapp.lab import jod_scales
from webapp.lab.qc import compute_qc
from webapp.lab.simulated_participants import simulated_ids


class Command(BaseCommand):
    help = ("From the judgments collected so far (a real or simulated pilot), how many judgments the study "
            "needs for 95 %% JOD intervals at most --ci-width wide (per codec×setting scale).")

    def add_arguments(self, parser):
        parser.add_argument("experiment", help="experiment slug")
        parser.add_argument("--ci-width", type=float, default=0.5, help="target interval width in JOD")
        parser.add_argument("--exclude-flagged", action="store_true",
                            help="leave out QC-flagged participants")
        parser.add_argument("--real-only", action="store_true",
                            help="leave out simulated participants (by default a simulated pilot counts)")
        parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")

    def handle(self, *args, **opts):
        if not opts["ci_width"] > 0:
            raise CommandError("--ci-width must be a positive number of JOD")
        try:
            exp = Experiment.objects.get(slug=opts["experiment"])
        except Experiment.DoesNotExist:
            raise CommandError(f"unknown experiment {opts['experiment']!r}") from None
        exclude: set[int] = set()
        if opts["exclude_flagged"]:
            exclude |= {pid for pid, p in compute_qc(exp).items() if p.flagged}
        if opts["real_only"]:
            exclude |= simulated_ids(exp)
        res = jod_scales.per_setting(exp, exclude, n_boot=opts["n_boot"])
        if res["scale"] is None:
            raise CommandError(f"no scale to plan from: {res['error']}")
        p = plan(res["scale"], opts["ci_width"])
        for line in p.lines():
            self.stdout.write(line)
        self.stdout.write(f"{'setting':<24} {'pilot width':>11} {'judgments needed':>16}")
        for cond, width, need in p.per_condition:
            self.stdout.write(f"{cond:<24} {width:>11.2f} {need:>16}")
