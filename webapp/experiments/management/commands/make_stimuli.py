"""``manage.py make_stimuli SLUG --codec jpeg:10,30``: encode the references, then build the trials.

All or nothing: everything that can be checked is checked before any work (experiment, codec specs,
assignments, reference sizes), and the stimuli, their files, the served copies, the experiment's settings
and its trials are written in one transaction with staged files (``webapp/stimuli/staging.py``), so a
failure, Ctrl-C or a kill halfway changes nothing.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from learning.codecs.spec import Setting, parse_codec_spec
from learning.errors import LearningError
from webapp.experiments.models import Experiment
from webapp.experiments.trials import build_trials
from webapp.stimuli.ingest import MIN_STIMULUS_SIDE, make_stimulus, original_stimulus
from webapp.stimuli.models import ReferenceImage
from webapp.stimuli.served import stage_served_copies
from webapp.stimuli.staging import Stage, staged_atomic


def check_experiment(slug: str) -> Experiment:
    """The experiment, or CommandError when it is missing or its trials are frozen (it has assignments)."""
    exp = Experiment.objects.filter(slug=slug).first()
    if exp is None:
        raise CommandError(f"no experiment {slug!r}")
    if exp.assignments.exists():
        raise CommandError(f"experiment {slug!r} already has assignments; its stimuli and trials are frozen "
                           "(copy the study to a new slug)")
    return exp


def check_settings(specs: list[str]) -> list[Setting]:
    """The codec settings of ``specs``, or CommandError."""
    if not specs:
        raise CommandError("no codec settings: pass --codec or list codecs in the experiment file")
    try:
        return [s for spec in specs for s in parse_codec_spec(spec)]
    except LearningError as exc:
        raise CommandError(str(exc)) from exc


def check_references(exp: Experiment, splits: list[str] | None) -> list[ReferenceImage]:
    """The references the experiment will use (its own, else all imported ones of ``splits``), or
    CommandError when there are none or one is too small to score."""
    refs = exp.references.all()
    if not refs.exists():
        refs = ReferenceImage.objects.filter(split__in=splits) if splits else ReferenceImage.objects.all()
    refs = list(refs.order_by("id"))
    if not refs:
        raise CommandError("no reference images: run import_images first")
    small = [r for r in refs if min(r.width, r.height) < MIN_STIMULUS_SIDE]
    if small:
        names = ", ".join(f"{r.original_name[:60]} ({r.width}x{r.height})" for r in small[:3])
        raise CommandError(f"{len(small)} reference image(s) smaller than {MIN_STIMULUS_SIDE}x"
                           f"{MIN_STIMULUS_SIDE} pixels (the SSIM window): {names}")
    return refs


def encode_all(refs: list[ReferenceImage], settings: list[Setting], stage: Stage) -> int:
    """Make every missing stimulus (files staged); how many were new."""
    made = 0
    with tqdm(total=len(refs) * len(settings), desc="stimuli", unit="img") as bar:
        for ref in refs:
            original_stimulus(ref, stage)
            for s in settings:
                try:
                    _, created = make_stimulus(ref, s, stage)
                except LearningError as exc:
                    raise CommandError(f"{ref.original_name[:100]} {s.label()}: {exc}") from exc
                made += created
                bar.update(1)
    return made


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
        exp = check_experiment(o["experiment"])
        specs = o["codec"] or exp.codec_settings
        settings = check_settings(specs)
        refs = check_references(exp, o["split"])
        with staged_atomic() as stage:
            exp = Experiment.objects.select_for_update().get(pk=exp.pk)
            check_experiment(exp.slug)  # again under the row lock: no participant entered meanwhile
            if not exp.references.exists():
                exp.references.set(refs)
            made = encode_all(refs, settings, stage)
            stage_served_copies(stage, refs)  # what participants receive, ready before the first one
            exp.codec_settings = sorted(set(exp.codec_settings) | set(specs))
            exp.save(update_fields=["codec_settings"])
            try:
                counts = build_trials(exp)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(f"{made} new stimuli; trials: {counts}")
