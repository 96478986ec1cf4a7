"""ORM factories for the researcher-side tests: tiny 32×32 PNG stimuli, trials, hand-made judgments."""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image


def png_bytes(seed: int, size: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class World:
    """One experiment with two references (train, test), stimuli, trials and a judging helper."""

    exp: object
    refs: list = field(default_factory=list)
    stim: dict = field(default_factory=dict)  # (ref index, setting) -> Stimulus
    normal: list = field(default_factory=list)  # normal trials, ordered by pk
    sentinel: dict = field(default_factory=dict)  # ref index -> sentinel trial
    practice: object = None
    assignments: dict = field(default_factory=dict)
    _pos: dict = field(default_factory=dict)
    _t: object = None

    def participant(self, name: str, platform: str = "prolific"):
        from webapp.crowd.models import Assignment, Participant

        p = Participant.objects.create(experiment=self.exp, platform=platform, platform_id=f"PID-{name}",
                                       study_id="S1", session_id=f"SES-{name}", consent_at=timezone.now())
        self.assignments[p.pk] = Assignment.objects.create(
            participant=p, experiment=self.exp, state="active", device={"dpr": 1},
            expires_at=timezone.now() + timedelta(hours=1))
        return p

    def judge(self, participant, trial, choose: str, ms: int = 1000, repeat: bool = False,
              left_is_a: bool = True):
        """Store one judgment of ``participant`` on ``trial`` choosing ``a`` (stimulus_a) or ``b``."""
        from webapp.crowd.models import AssignmentItem, Judgment

        a = self.assignments[participant.pk]
        pos = self._pos.get(a.pk, 0)
        self._pos[a.pk] = pos + 1
        practice = trial.kind == "practice"
        item = AssignmentItem.objects.create(assignment=a, position=pos, trial=trial, is_repeat=repeat,
                                             is_practice=practice, left_is_a=left_is_a)
        chosen = trial.stimulus_a if choose == "a" else trial.stimulus_b
        left = trial.stimulus_a if left_is_a else trial.stimulus_b
        side = "left" if chosen == left else "right"
        self._t = (self._t or timezone.now() - timedelta(minutes=30)) + timedelta(seconds=7)
        return Judgment.objects.create(
            assignment=a, item=item, trial=trial, chosen=chosen, chosen_side=side, left_stimulus=left,
            response_ms=ms, client_uuid=uuid.uuid4(), client_created=self._t)


SETTINGS = [("original", None, 24.0), ("jpeg", 10, 0.4), ("jpeg", 50, 1.2), ("webp", 30, 0.8)]


def build_world(owner, slug: str = "exp1", min_response_ms: int = 300, spec: dict | None = None) -> World:
    from webapp.experiments.models import Experiment, Trial
    from webapp.stimuli.models import ReferenceImage, Stimulus

    exp = Experiment.objects.create(
        slug=slug, title=f"Title {slug}", owner=owner, question="Which is closer to the reference?",
        mode="triplet", min_response_ms=min_response_ms, judgments_per_trial=3, trials_per_assignment=8,
        status="live", spec=spec or {}, codec_settings=["jpeg:10,50", "webp:30"])
    w = World(exp=exp)
    seed = 0
    for r, split in enumerate(["train", "test"]):
        data = png_bytes(1000 + r + sum(slug.encode()))
        ref = ReferenceImage.objects.create(
            sha256=hashlib.sha256(data).hexdigest(), file=ContentFile(data, name=f"{slug}-ref{r}.png"),
            original_name=f"ref{r}.png", source="test", licence="CC0", split=split, width=32, height=32)
        exp.references.add(ref)
        w.refs.append(ref)
        for codec, q, bpp in SETTINGS:
            seed += 1
            dec = data if codec == "original" else png_bytes(seed)
            w.stim[(r, codec if q is None else f"{codec}{q}")] = Stimulus.objects.create(
                reference=ref, codec=codec, codec_version="1", params={"quality": q}, quality=q,
                target_bpp=None, bpp=bpp, encoded=dec, encoded_sha256=hashlib.sha256(dec).hexdigest(),
                decoded=ContentFile(dec, name=f"{slug}-s{seed}.png"),
                psnr=float("inf") if codec == "original" else 20.0 + (q or 0) / 2 + (codec == "webp") * 8,
                ssim=1.0 if codec == "original" else 0.5 + (q or 0) / 200,
                setting_key=codec if q is None else f"{codec}:{q}")
        s = lambda k, r=r: w.stim[(r, k)]  # noqa: E731
        for a, b in [("jpeg10", "jpeg50"), ("jpeg10", "webp30"), ("jpeg50", "webp30")]:
            w.normal.append(Trial.objects.create(experiment=exp, reference=ref, stimulus_a=s(a),
                                                 stimulus_b=s(b), kind="normal", target_judgments=3))
        w.sentinel[r] = Trial.objects.create(experiment=exp, reference=ref, stimulus_a=s("jpeg10"),
                                             stimulus_b=s("original"), kind="sentinel",
                                             expected=s("original"), target_judgments=3)
    w.practice = Trial.objects.create(experiment=exp, reference=w.refs[0], stimulus_a=w.stim[(0, "original")],
                                      stimulus_b=w.stim[(0, "jpeg10")], kind="practice",
                                      expected=w.stim[(0, "original")], target_judgments=0)
    return w



# judge counts (n, n choosing stimulus_b) per normal trial of the ``judged`` fixture, worked out by hand
ALL = [(5, 1), (4, 2), (2, 2), (2, 1), (1, 0), (2, 1)]
WITHOUT_BAD = [(3, 0), (2, 1), (1, 1), (1, 1), (1, 0), (2, 1)]


def run_tasks() -> None:
    """Run every queued background task (exports) with the real worker, ``manage.py db_worker --batch``, in
    this process (tests that use it need ``transactional_db``: the worker manages its connection)."""
    from django.core.management import call_command

    call_command("db_worker", "--batch", "--no-startup-delay", "--no-reload", verbosity=0)
