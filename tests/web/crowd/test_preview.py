"""A researcher's preview of a study (``webapp/crowd/preview.py``): login and access, every page marked as a
preview, the same pages and images a participant gets, and nothing written to the database."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.web.conftest import enter

BANNER = "Preview — nothing is stored"
IMAGE_URL = re.compile(r"^/lab/e/[-a-z0-9]+/preview/\d+/img/\d+/(left|right|ref)$")


def _crowd_rows() -> dict[str, int]:
    """Rows of every table the participant side writes (and the sessions)."""
    from webapp.crowd.models import Assignment, AssignmentItem, Erasure, Judgment, Participant, TrialSlots

    return {m.__name__: m.objects.count()
            for m in (Participant, Assignment, AssignmentItem, Judgment, TrialSlots, Erasure, Session)}


@pytest.fixture
def owner_client(experiment_factory, django_user_model):
    """A client logged in as the owner of the factory's studies (logged in before anything is counted)."""
    c = Client()
    c.force_login(django_user_model.objects.get(username="crowd-owner"))
    return c


def _state(page: str) -> dict:
    return json.loads(re.search(r'<script id="state" type="application/json">(.*?)</script>', page, re.S)[1])


def _writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


def test_preview_of_a_draft_shows_every_page_and_stores_nothing(experiment_factory, owner_client):

    exp = experiment_factory(status="draft", trials_per_assignment=4, practice_trials=1)
    c = owner_client
    base = f"/lab/e/{exp.slug}/preview/"
    before = _crowd_rows()
    with CaptureQueriesContext(connection) as q:
        consent = c.get(base)
        declined = c.post(base, {"decline": "1"})
        go = c.post(base, {"consent": "yes"})
        task = c.get(go["Location"])
        state = _state(task.content.decode())
        images = {it[side]: c.get(it[side]) for it in state["items"] for side in ("left", "right", "ref")}
        done = c.get(f"{base}done/")
        withdrawn = c.get(f"{base}withdrawn/?n=3")
    assert _writes(q.captured_queries) == []
    assert _crowd_rows() == before

    for r in (consent, declined, task, done, withdrawn):
        assert r.status_code == 200 and BANNER in r.content.decode(), r.content[:300]
        assert r.headers["X-Frame-Options"] == "DENY"  # a researcher page, never framed
    assert b'id="consent-form"' in consent.content and b"csrfmiddlewaretoken" in consent.content
    assert b"Nothing about you has been stored" in declined.content
    assert go.status_code == 302 and go["Location"] == f"{base}task/"
    page = task.content.decode()
    assert 'data-preview="1"' in page and f'data-done="{base}done/"' in page and "/i18n/en.js" in page
    assert "/a/" not in page  # no participant endpoint: answers stay in the page

    # as an assignment is made: practice first, 4 trials, sentinels and repeats at the study's rates
    items = state["items"]
    assert [it["practice"] for it in items[:1]] == [True] and not any(it["practice"] for it in items[1:])
    assert len(items) == 1 + 4 + round(0.25 * 4) + round(0.25 * 4)
    assert items[0]["correct"] in ("left", "right")
    for url, r in images.items():
        assert IMAGE_URL.match(url), url  # a position and a side: nothing about codec, quality or stimulus
        assert r.status_code == 200 and r["Content-Type"] == "image/png"
        assert r.headers["Cache-Control"] == "private, max-age=86400, no-transform"
    text = json.dumps(state)
    assert not re.search(r"jpeg|quality|codec|stimulus|/media/", text, re.I), text
    assert b"CODE-123" in done.content  # the study's completion code, as participants get it
    assert b"Your 3 answers" in withdrawn.content and b"nothing was erased" in withdrawn.content


def test_preview_images_are_the_served_copies_of_the_plan(experiment_factory, owner_client):
    from webapp.crowd.preview import plan
    from webapp.stimuli.served import served_path

    exp = experiment_factory(status="paused")
    items = plan(exp, 7)
    assert plan(exp, 7) == items  # the seed in the image URL names the same sample every time
    for it in items:
        left = it.trial.stimulus_a if it.left_is_a else it.trial.stimulus_b
        r = owner_client.get(f"/lab/e/{exp.slug}/preview/7/img/{it.position}/left")
        assert b"".join(r.streaming_content) == served_path(left.decoded).read_bytes()
    n = len(items)
    for bad in (f"7/img/{n}/left", "7/img/0/middle", f"{2**31}/img/0/left"):
        assert owner_client.get(f"/lab/e/{exp.slug}/preview/{bad}").status_code == 404


def test_preview_needs_a_researcher_who_may_see_the_study(experiment_factory, django_user_model):
    exp = experiment_factory(status="draft")
    base = f"/lab/e/{exp.slug}/preview/"
    urls = [base, f"{base}task/", f"{base}done/", f"{base}withdrawn/", f"{base}1/img/0/left"]
    for url in urls:
        r = Client().get(url)
        assert r.status_code == 302 and r["Location"].startswith("/lab/login/"), url
    stranger = Client()
    stranger.force_login(django_user_model.objects.create_user("stranger", password="pw-stranger"))
    for url in urls:
        assert stranger.get(url).status_code == 404, url  # never says that the study exists
    assert stranger.post(base, {"consent": "yes"}).status_code == 404


def test_a_participant_never_reaches_the_preview(live_experiment):
    """A participant's browser (its session tied to an assignment) is an anonymous visitor to the lab."""
    c = Client()
    a = enter(c, live_experiment)
    r = c.get(f"/lab/e/{live_experiment.slug}/preview/task/")
    assert r.status_code == 302 and r["Location"].startswith("/lab/login/")
    assert str(a.token) not in r["Location"]


def test_preview_shows_the_refusal_a_device_would_get(experiment_factory, owner_client):
    exp = experiment_factory(status="draft", viewing={"min_viewport": [1000, 700], "mobile": False})
    base = f"/lab/e/{exp.slug}/preview/"
    before = _crowd_rows()
    small = json.dumps({"viewport": [800, 600], "dpr": 1, "mobile": False, "fullscreen": True})
    with CaptureQueriesContext(connection) as q:
        consent = owner_client.get(base)
        r = owner_client.post(base, {"consent": "yes", "viewing": small})
        fine = owner_client.post(base, {"consent": "yes", "viewing": small.replace("800, 600", "1200, 800")})
    assert _writes(q.captured_queries) == [] and _crowd_rows() == before
    assert b'id="viewing-facts"' in consent.content and b"at least 1000 \xc3\x97 700" in consent.content
    page = r.content.decode()
    assert r.status_code == 403 and 'id="refused"' in page and BANNER in page
    assert "Your browser window is 800 × 600 pixels" in page
    assert f'id="go-on" href="{base}task/"' in page and f'id="again" href="{base}"' in page
    assert fine.status_code == 302 and fine["Location"] == f"{base}task/"


def test_the_study_page_links_the_preview(client, experiment_factory, django_user_model):
    exp = experiment_factory(status="draft")
    client.force_login(django_user_model.objects.get(username="crowd-owner"))
    page = client.get(f"/lab/e/{exp.slug}/").content.decode()
    assert f'href="/lab/e/{exp.slug}/preview/" id="preview"' in page
    assert client.get(f"/lab/e/{exp.slug}/preview/").status_code == 200
