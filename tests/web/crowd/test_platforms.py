"""Platform adapters: the registry, the framing rule of each platform's pages, MTurk's cookie-less consent
form (signed field + Origin/Referer), and Prolific's one completion code."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from tests.web.conftest import consent_form, enter
from webapp.crowd import platforms
from webapp.crowd.models import Assignment, Participant
from webapp.experiments.models import Experiment

SANDBOX = "https://workersandbox.mturk.com"
OWN = {"Origin": "http://testserver"}


@pytest.fixture(autouse=True)
def _no_rate_limit(settings):
    settings.CROWD_RATE_LIMIT = 0  # the limiter has its own tests; these send many entries from one address


def _hit(exp, **ids) -> str:
    ids = {"workerId": "W1", "assignmentId": "A1", "hitId": "H1", "turkSubmitTo": SANDBOX, **ids}
    return f"/p/{exp.slug}/?" + urlencode(ids)


def test_registry_agrees_with_the_models():
    recruiting = [(p.name, p.label) for p in platforms.recruiting()]
    assert recruiting == Experiment.PLATFORMS
    assert [(p.name, p.label) for p in platforms.REGISTRY.values()] == Participant.PLATFORMS
    with pytest.raises(KeyError, match="unknown platform 'nope'; known: open, prolific, mturk"):
        platforms.get("nope")


def _framing(r) -> tuple[str | None, str | None]:
    return r.headers.get("X-Frame-Options"), r.headers.get("Content-Security-Policy")


def test_mturk_pages_may_be_framed_by_mturk_only(client, experiment_factory, settings):
    exp = experiment_factory(platform="mturk")
    mturk = "frame-ancestors https://worker.mturk.com https://workersandbox.mturk.com https://www.mturk.com"
    assert settings.CROWD_MTURK_FRAME_ANCESTORS == mturk.split()[1:]
    consent = client.get(_hit(exp))
    preview = client.get(_hit(exp, assignmentId="ASSIGNMENT_ID_NOT_AVAILABLE"))
    missing = client.get(f"/p/{exp.slug}/?workerId=W9")
    a = enter(client, exp, workerId="W1", assignmentId="A1", hitId="H1", turkSubmitTo=SANDBOX)
    task = client.get(f"/a/{a.token}/")
    early_done = client.get(f"/a/{a.token}/done")  # a redirect back to the task
    for r in (consent, preview, missing, task, early_done):
        assert _framing(r) == (None, mturk), r
    # every other page keeps DENY: researcher pages, other studies, the JSON API
    other = experiment_factory(platform="prolific")
    assert _framing(client.get(f"/p/{other.slug}/?PROLIFIC_PID=P1")) == ("DENY", None)
    assert _framing(client.get(f"/p/{experiment_factory().slug}/")) == ("DENY", None)
    assert _framing(client.get("/lab/login/")) == ("DENY", None)
    assert client.get(f"/a/{a.token}/state").headers.get("Content-Security-Policy") is None


def test_mturk_flow_sets_no_cookie(experiment_factory):
    """In MTurk's frame cookies are blocked; the flow must not need one, so it sets none."""
    exp = experiment_factory(platform="mturk")
    c = Client()
    link = _hit(exp)
    page = c.get(link)
    assert b"csrfmiddlewaretoken" not in page.content and not page.cookies
    r = c.post(link, {**consent_form(c, link), "consent": "yes"}, headers=OWN)
    assert r.status_code == 302 and r["Location"].startswith("/a/") and not r.cookies
    again = c.get(link)  # the worker reloads the HIT: resumed from the link alone
    assert again.status_code == 302 and again["Location"] == r["Location"] and not again.cookies


@pytest.mark.parametrize("headers, status", [
    ({}, 403),  # neither Origin nor Referer: not a browser's form on this site
    ({"Origin": "https://evil.example"}, 403),
    ({"Origin": "null"}, 403),
    ({"Referer": "https://evil.example/p/x/"}, 403),
    ({"Referer": "http://testserver.evil.example/p/"}, 403),
    ({"Referer": "http://testserver/p/x/?workerId=W1"}, 302),
    ({"Origin": "http://testserver"}, 302),
])
def test_mturk_consent_must_come_from_the_site(experiment_factory, headers, status):
    exp = experiment_factory(platform="mturk")
    c = Client()
    link = _hit(exp)
    r = c.post(link, {**consent_form(c, link), "consent": "yes"}, headers=headers)
    assert r.status_code == status
    assert Assignment.objects.count() == (status == 302)


def test_mturk_consent_ids_come_from_the_signed_field(experiment_factory, monkeypatch):
    exp, other = experiment_factory(platform="mturk"), experiment_factory(platform="mturk")
    c = Client()
    link = _hit(exp)
    form = consent_form(c, link)
    assert set(form) == {"entry"}  # the ids travel signed, not as editable fields
    # a form without the field, a tampered one, or one issued for another study: 400, nothing stored
    for bad in ({}, {"entry": form["entry"][:-2] + "xx"}, consent_form(c, _hit(other))):
        r = c.post(link, {**bad, "consent": "yes"}, headers=OWN)
        assert r.status_code == 400 and b"not valid" in r.content
    assert not Participant.objects.exists()
    # ids posted beside the signed field change nothing: the signed ones are used
    r = c.post(link, {**form, "consent": "yes", "workerId": "EVE", "assignmentId": "A-EVE"}, headers=OWN)
    a = Assignment.objects.get()
    assert r.status_code == 302 and (a.participant.platform_id, a.mturk_assignment_id) == ("W1", "A1")
    # an expired form (older than an MTurk assignment can last) is refused
    monkeypatch.setattr(platforms.mturk, "FORM_MAX_AGE_S", -1)
    link2 = _hit(exp, workerId="W2", assignmentId="A2")
    late = c.post(link2, {**consent_form(c, link2), "consent": "yes"}, headers=OWN)
    assert late.status_code == 400 and Assignment.objects.count() == 1


def test_mturk_resume_is_per_assignment_id(experiment_factory):
    """The same worker on a second HIT assignment gets a new assignment; the first one's link resumes it."""
    exp = experiment_factory(platform="mturk")
    c = Client()
    first = enter(c, exp, workerId="W1", assignmentId="A1", hitId="H1", turkSubmitTo=SANDBOX)
    assert c.get(_hit(exp))["Location"] == f"/a/{first.token}/"
    second = enter(c, exp, workerId="W1", assignmentId="A2", hitId="H1", turkSubmitTo=SANDBOX)
    assert second.pk != first.pk and second.participant_id == first.participant_id


def test_prolific_needs_one_completion_code(db, tmp_path):
    spec = {"slug": "pro", "title": "T", "platform": "prolific", "codecs": ["jpeg:10"]}
    path = tmp_path / "pro.json"
    for code in ("", "   "):
        path.write_text(json.dumps({**spec, "completion_code": code}))
        with pytest.raises(CommandError, match="completion_code: required for a Prolific study"):
            call_command("create_experiment", str(path))
    path.write_text(json.dumps({k: v for k, v in spec.items()}))  # absent altogether
    with pytest.raises(CommandError, match="completion_code: required"):
        call_command("create_experiment", str(path))
    assert not Experiment.objects.exists()
    path.write_text(json.dumps({**spec, "completion_code": "C0DE"}))
    call_command("create_experiment", str(path))
    assert Experiment.objects.get().completion_code == "C0DE"
