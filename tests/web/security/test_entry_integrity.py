"""The entry and write endpoints: session fixation, MTurk previews, writes to closed assignments.

- a session id planted in a browser before consent never leads to the assignment made there;
- a consent POST carrying MTurk's preview assignment id creates nothing;
- the device endpoint writes only where the judge endpoint would, and answers as it does otherwise.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from importlib import import_module
from urllib.parse import urlencode

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from tests.web.conftest import consent_form, enter
from tests.web.security.hostile import assert_clean, probe

# --- session fixation ---------------------------------------------------------------------------------


def _session_key(client: Client, settings) -> str | None:
    morsel = client.cookies.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel is not None and morsel.value else None


def _consent_form(client: Client, exp) -> dict:
    """The consent page's hidden fields, as a browser would post them with its consent."""
    r = client.get(f"/p/{exp.slug}/")
    assert r.status_code == 200, r.status_code
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', r.content.decode()))
    return {**fields, "consent": "yes"}


def _consent(client: Client, exp, form: dict) -> str:
    r = client.post(f"/p/{exp.slug}/", form)
    assert r.status_code == 302, r.content[:300]
    return r["Location"]


def _planted_session() -> str:
    """A real session id known to an attacker (any page that stores a session would hand out one)."""
    from django.conf import settings

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store["seen"] = True
    store.create()
    return store.session_key


def test_consent_rotates_a_planted_session(live_experiment, settings):
    from webapp.crowd.models import Assignment

    planted = _planted_session()
    attacker, victim = Client(), Client()
    for c in (attacker, victim):  # e.g. set in the victim's browser through a sibling subdomain
        c.cookies[settings.SESSION_COOKIE_NAME] = planted
    attackers_form = _consent_form(attacker, live_experiment)  # taken before the victim consents

    victims_form = _consent_form(victim, live_experiment)
    location = _consent(victim, live_experiment, victims_form)
    a = Assignment.objects.get(token=location.strip("/").split("/")[-1])
    rotated = _session_key(victim, settings)
    assert rotated and rotated != planted
    assert not Session.objects.filter(session_key=planted).exists()

    # the planted id no longer reaches the victim's assignment: the attacker is a new visitor ...
    r = attacker.get(f"/p/{live_experiment.slug}/")
    assert r.status_code == 200 and str(a.token) not in r.content.decode() + r.get("Location", "")
    # ... and consenting with the form taken earlier starts another participant
    theirs = _consent(attacker, live_experiment, attackers_form)
    assert theirs != location
    assert Assignment.objects.exclude(pk=a.pk).get().participant_id != a.participant_id
    # the victim's new session still resumes the victim's own assignment, under the same key
    assert victim.get(f"/p/{live_experiment.slug}/")["Location"] == location
    assert _session_key(victim, settings) == rotated
    assert victims_form["entry"] != attackers_form["entry"]  # every consent page starts its own identity


def test_a_resent_consent_form_finds_the_first_assignment(live_experiment, settings):
    """A double submit, or a retry sent with the cookies from before the first answer arrived: one
    participant, one assignment. A tampered form starts nothing."""
    from webapp.crowd.models import Assignment, Participant

    first = Client()
    form = _consent_form(first, live_experiment)
    before = {k: m.value for k, m in first.cookies.items()}
    location = _consent(first, live_experiment, form)
    retry = Client()
    for name, value in before.items():  # the retry carries the pre-consent cookies (no session key)
        retry.cookies[name] = value
    assert _consent(retry, live_experiment, form) == location
    assert _session_key(retry, settings) != _session_key(first, settings)
    assert Assignment.objects.count() == 1 and Participant.objects.count() == 1
    # a form from another consent page (another browser) is another participant
    assert _consent(Client(), live_experiment, _consent_form(Client(), live_experiment)) != location
    forged = {**form, "entry": form["entry"][:-1] + ("A" if form["entry"][-1] != "A" else "B")}
    for bad in (forged, {**form, "entry": "some-participant-id"}, {**form, "entry": ""}):
        r = probe("entry.form", bad["entry"][:40], Client(raise_request_exception=False).post,
                  f"/p/{live_experiment.slug}/", bad, expect={400})
        assert b"consent form is not valid" in r.body
    assert_clean("entry.form", 3)


def test_every_new_identity_gets_a_new_session_key(client, experiment_factory, settings):
    exp = experiment_factory(platform="prolific")
    keys = []
    for pid in ("PID-ONE", "PID-TWO"):  # one browser, two participants one after the other
        a = enter(client, exp, PROLIFIC_PID=pid, STUDY_ID="s", SESSION_ID="x")
        keys.append(_session_key(client, settings))
        assert client.session[f"crowd_token_{exp.slug}"] == str(a.token)
    # back to the first participant (resume from the link): another change of identity, another key
    r = client.get(f"/p/{exp.slug}/", {"PROLIFIC_PID": "PID-ONE"})
    assert r.status_code == 302
    keys.append(_session_key(client, settings))
    # the same participant again: nothing changes hands, the key stays
    client.get(f"/p/{exp.slug}/", {"PROLIFIC_PID": "PID-ONE"})
    keys.append(_session_key(client, settings))
    assert None not in keys and len(set(keys[:3])) == 3 and keys[3] == keys[2]


# --- MTurk preview --------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["body", "query", "both", "padded"])
def test_consent_post_in_mturk_preview_creates_nothing(raw_client, experiment_factory, settings, where):
    from webapp.crowd.models import Assignment, Participant

    settings.CROWD_RATE_LIMIT = 0
    exp = experiment_factory(platform="mturk")
    preview = "ASSIGNMENT_ID_NOT_AVAILABLE"
    ids = {"workerId": "W1", "hitId": "H1", "turkSubmitTo": "https://workersandbox.mturk.com"}
    body = {"consent": "yes", **ids}
    query = dict(ids)
    if where in ("body", "both"):
        body["assignmentId"] = preview
    if where in ("query", "both"):
        query["assignmentId"] = preview
    if where == "query":
        body["assignmentId"] = "REAL-1"  # a real id in the form does not outweigh the preview in the link
    if where == "padded":
        body["assignmentId"] = f"  {preview} "
    url = f"/p/{exp.slug}/?" + "&".join(f"{k}={v}" for k, v in query.items())
    r = probe("entry.preview", where, raw_client.post, url, body, expect={400})
    assert "preview" in r.body.decode().lower() and "accept" in r.body.decode().lower()
    assert_clean("entry.preview", 1)
    assert not Participant.objects.exists() and not Assignment.objects.exists()
    # once accepted, the same worker's consent (the form of the accepted HIT's page) goes through
    link = f"/p/{exp.slug}/?" + urlencode({**ids, "assignmentId": "REAL-1"})
    ok = raw_client.post(link, {**consent_form(raw_client, link), "consent": "yes"},
                         headers={"Origin": "http://testserver"})
    assert ok.status_code == 302 and Assignment.objects.get().mturk_assignment_id == "REAL-1"


# --- writes to closed assignments ---------------------------------------------------------------------


def _post(client, a, view, body):
    return client.post(f"/a/{a.token}/{view}", json.dumps(body), content_type="application/json",
                       headers={"X-Assignment-Token": str(a.token)}, HTTP_USER_AGENT="Late/1.0")


def _judge_and_device(client, a) -> tuple:
    """(judge answer, device answer) for the same assignment, as (status, body) pairs."""
    j = _post(client, a, "judge", {"uuid": str(uuid.uuid4()), "position": 0, "choice": "left",
                                   "response_ms": 900})
    d = probe("writes.device", f"device on {a.state}", _post, client, a, "device", {"dpr": 3})
    return (j.status_code, j.json()), (d.status, json.loads(d.body))


def _close(exp, a, how: str) -> None:
    """Close ``a`` (or its study) the way ``how`` names."""
    from webapp.crowd.models import Assignment

    if how in ("paused", "closed", "draft"):
        exp.status = how
        exp.save(update_fields=["status"])
    elif how == "expired":
        Assignment.objects.filter(pk=a.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif how == "completed":
        Assignment.objects.filter(pk=a.pk).update(state="completed", completed_at=timezone.now())


@pytest.mark.parametrize("how", ["completed", "expired", "paused", "closed", "draft"])
def test_device_refuses_closed_assignments_as_judge_does(client, live_experiment, how):
    from webapp.crowd.models import Assignment

    a = enter(client, live_experiment)
    assert _post(client, a, "device", {"dpr": 2}).status_code == 200
    before = Assignment.objects.get(pk=a.pk).device
    assert before["dpr"] == 2
    _close(live_experiment, a, how)
    a.refresh_from_db()
    judge, device = _judge_and_device(client, a)
    assert judge[0] == 403 and device == judge, (how, judge, device)
    assert Assignment.objects.get(pk=a.pk).device == before  # nothing overwritten
    assert_clean("writes.device", 1)


def test_device_after_completion_through_the_real_flow(client, live_experiment):
    from webapp.crowd.models import Assignment

    a = enter(client, live_experiment)
    assert _post(client, a, "device", {"dpr": 1, "viewport": [800, 600]}).status_code == 200
    for item in a.items.order_by("position"):
        body = {"uuid": str(uuid.uuid4()), "position": item.position, "choice": "left", "response_ms": 900}
        assert _post(client, a, "judge", body).status_code == 201
    done = client.post(f"/a/{a.token}/complete", headers={"X-Assignment-Token": str(a.token)})
    assert done.status_code == 200
    r = _post(client, a, "device", {"dpr": 3, "viewport": [1, 1]})
    assert r.status_code == 403 and r.json() == {"error": "this assignment is completed"}
    assert Assignment.objects.get(pk=a.pk).device["viewport"] == [800, 600]


def test_device_input_errors_come_before_closed_as_for_judge(client, live_experiment):
    a = enter(client, live_experiment)
    _close(live_experiment, a, "paused")
    assert _post(client, a, "device", {"dpr": "x"}).status_code == 400  # the request's own error first
    r = client.post(f"/a/{a.token}/device", "{}", content_type="application/json")  # no header
    assert r.status_code == 403 and "X-Assignment-Token" in r.json()["error"]
    assert client.post(f"/a/{uuid.uuid4()}/device", "{}", content_type="application/json").status_code == 404
