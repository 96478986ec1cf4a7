"""Shared fixtures for the web tests: a real experiment built with the real commands.

``experiment_factory(**fields)`` -> a live Experiment (2 references of 64×64 cut from fixtures/images,
jpeg:10,40,80 -> 3 normal pairs per reference, plus sentinel and practice trials).
``live_experiment`` -> one such experiment with default settings. ``participant_client(exp)`` -> helper that
enters the study over the Django test client and returns the assignment. All use ``db`` (so tests that
ask for ``transactional_db`` / ``live_server`` get committed rows).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from PIL import Image

FIXTURE_IMAGES = Path(__file__).resolve().parents[2] / "fixtures" / "images"


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def small_images(tmp_path) -> Path:
    """Two 64×64 RGB PNGs cut from the committed Kodak crops."""
    out = tmp_path / "refs"
    out.mkdir()
    for src in sorted(FIXTURE_IMAGES.glob("*.png"))[:2]:
        Image.open(src).convert("RGB").crop((64, 64, 128, 128)).save(out / src.name)
    return out


@pytest.fixture
def experiment_factory(db, media_root, small_images, tmp_path, django_user_model):
    """Make live experiments through import_images / create_experiment / make_stimuli."""
    counter = {"n": 0}
    owner = django_user_model.objects.create_user("crowd-owner", password="pw-owner")
    call_command("import_images", str(small_images), split_seed=0, test_fraction=0.5, val_fraction=0)

    def make(codecs: tuple[str, ...] = ("jpeg:10,40,80",), status: str = "live", **fields):
        from webapp.experiments.models import Experiment

        counter["n"] += 1
        spec = {
            "slug": fields.pop("slug", f"exp{counter['n']}"),
            "title": "Test experiment",
            "mode": "triplet",
            "platform": "open",
            "trials_per_assignment": 4,
            "judgments_per_trial": 3,
            "sentinel_rate": 0.25,
            "repeat_rate": 0.25,
            "min_response_ms": 200,
            "practice_trials": 1,
            "seed": 3,
            "completion_code": "CODE-123",
            "consent_text": "Consent.",
            "instructions_text": "Do it.",
            "codecs": list(codecs),
            **fields,
        }
        path = tmp_path / f"{spec['slug']}.json"
        path.write_text(json.dumps(spec))
        call_command("create_experiment", str(path), owner=owner.username)
        call_command("make_stimuli", spec["slug"])
        exp = Experiment.objects.get(slug=spec["slug"])
        exp.status = status
        exp.save(update_fields=["status"])
        return exp

    return make


@pytest.fixture
def live_experiment(experiment_factory):
    """A live open-link triplet experiment: 6 normal trials, 2 sentinels, 2 practice; 4 trials/assignment."""
    return experiment_factory()


HIDDEN_INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def consent_form(client, url: str) -> dict[str, str]:
    """The hidden fields of the consent form at ``url``, as a browser would send them back."""
    r = client.get(url)
    assert r.status_code == 200 and b'id="consent-form"' in r.content, r.content[:300]
    return {k: html.unescape(v) for k, v in HIDDEN_INPUT.findall(r.content.decode())}


def enter(client, exp, **params):
    """Consent on ``/p/<slug>/`` with the Django test client as a browser does (the link, then its consent
    form posted back from the site's own page); returns the created Assignment."""
    from webapp.crowd.models import Assignment

    url = f"/p/{exp.slug}/" + ("?" + urlencode(params) if params else "")
    form = consent_form(client, url)
    r = client.post(url, {**form, "consent": "yes"}, headers={"Origin": "http://testserver"})
    assert r.status_code == 302, r.content[:300]
    token = r["Location"].rstrip("/").split("/")[-1]
    return Assignment.objects.get(token=token)


@pytest.fixture
def browser(monkeypatch):
    """Headless Debian Chromium (tests/web/chromium.py)."""
    from tests.web.chromium import chromium

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    with chromium() as b:
        yield b


@pytest.fixture
def participant_client():
    return enter
