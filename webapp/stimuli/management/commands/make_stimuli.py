"""``manage.py make_stimuli SLUG --codec jpeg:10,30``: encode the references, then build the trials."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from learning.codecs.spec import parse_codec_spec
from learning.errors import LearningError
from webapp.experiments.models import Experiment
from webapp.experiments.trials import build_trials
from webapp.stimuli.ingest import make_stimulus, original_stimulus
from webapp.stimuli.models import ReferenceImage
from webapp.stimuli.served import write_served_copies


class Command(BaseCommand):
    help = "Encode every reference of an experiment with the given codec settings, then build its trials."

    def add_arguments(self, parser):
        parser.add_argument("experiment", help="experiment slug")
        parser.add_argument(
            "--codec",
            action="append",
            default=[],
            help="codec spec: NAME:Q1,Q2 or NAME@BPP1,BPP2 (repeatable); default: the file's",
        )
        parser.add_argument(
            "--split",
            action="append",
            choices=["train", "val", "test"],
            help="only references of this split (default: all; repeatable)",
        )

    def handle(self, *args, **o):
        exp = Experiment.objects.filter(slug=o["experiment"]).first()
        if exp is None:
            raise CommandError(f"no experiment {o['experiment']!r}")
        specs = o["codec"] or exp.codec_settings
        if not specs:
            raise CommandError("no codec settings: pass --codec or list codecs in the experiment file")
        try:
            settings = [s for spec in specs for s in parse_codec_spec(spec)]
        except LearningError as exc:
            raise CommandError(str(exc)) from exc
        if not exp.references.exists():
            refs = ReferenceImage.objects.all()
            if o["split"]:
                refs = refs.filter(split__in=o["split"])
            exp.references.set(refs)
        refs = list(exp.references.order_by("id"))
        if not refs:
            raise CommandError("no reference images: run import_images first")
        made = 0
        with tqdm(total=len(refs) * len(settings), desc="stimuli", unit="img") as bar:
            for ref in refs:
                original_stimulus(ref)
                for s in settings:
                    try:
                        _, created = make_stimulus(ref, s)
                    except LearningError as exc:
                        raise CommandError(f"{ref.original_name} {s.label()}: {exc}") from exc
                    made += created
                    bar.update(1)
        write_served_copies(refs)  # what participants receive (uncompressed), ready before the first one
        exp.codec_settings = sorted(set(exp.codec_settings) | set(specs))
        exp.save(update_fields=["codec_settings"])
        try:
            counts = build_trials(exp)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{made} new stimuli; trials: {counts}")
