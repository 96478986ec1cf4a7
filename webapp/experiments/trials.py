"""Building an experiment's trials from its stimuli: normal pairs, sentinels, practice."""

from __future__ import annotations

import itertools
import random

from django.db import transaction

from learning.codecs.spec import parse_codec_spec
from webapp.experiments.models import Experiment, Trial
from webapp.stimuli.ingest import setting_key
from webapp.stimuli.models import Stimulus


def build_trials(exp: Experiment) -> dict[str, int]:
    """(Re)build the trials of a draft experiment. Counts of trials by kind.

    Per reference: every pair of distorted stimuli (or ``pairs_per_reference`` sampled pairs with the
    experiment seed), one sentinel (original vs the lowest-bpp distortion, expected = the original) and
    one practice trial built the same way.
    """
    rng = random.Random(exp.seed)
    wanted = {(s.codec, setting_key(s)) for spec in exp.codec_settings for s in parse_codec_spec(spec)}
    counts = {"normal": 0, "sentinel": 0, "practice": 0}
    with transaction.atomic():
        if Trial.objects.filter(experiment=exp, items__isnull=False).exists():
            raise ValueError(f"experiment {exp.slug!r} already has assignments; trials are frozen")
        Trial.objects.filter(experiment=exp).delete()
        new = []
        for ref in exp.references.order_by("id"):
            stims = [
                s
                for s in Stimulus.objects.filter(reference=ref).exclude(codec="original").order_by("id")
                if (s.codec, s.setting_key) in wanted
            ]
            orig = Stimulus.objects.filter(reference=ref, codec="original").first()
            pairs = list(itertools.combinations(stims, 2))
            if exp.pairs == "sampled" and exp.pairs_per_reference and len(pairs) > exp.pairs_per_reference:
                pairs = rng.sample(pairs, exp.pairs_per_reference)
            for a, b in pairs:
                if rng.random() < 0.5:
                    a, b = b, a
                new.append(
                    Trial(
                        experiment=exp,
                        reference=ref,
                        stimulus_a=a,
                        stimulus_b=b,
                        kind="normal",
                        target_judgments=exp.judgments_per_trial,
                    )
                )
            if orig is not None and stims:
                worst = min(stims, key=lambda s: s.bpp)
                for kind in ("sentinel", "practice"):
                    a, b = (orig, worst) if rng.random() < 0.5 else (worst, orig)
                    new.append(
                        Trial(
                            experiment=exp,
                            reference=ref,
                            stimulus_a=a,
                            stimulus_b=b,
                            kind=kind,
                            expected=orig,
                            target_judgments=0,
                        )
                    )
        Trial.objects.bulk_create(new)
    for t in new:
        counts[t.kind] += 1
    return counts
