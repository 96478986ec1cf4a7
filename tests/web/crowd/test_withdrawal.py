"""Participants' rights on the participant side: declining consent stores nothing; withdrawing erases the
participant's judgments and ids and keeps a record naming nobody; a replayed or forged withdrawal changes
nothing; consent and instruction texts are rendered as paragraphs."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from django.test import Client

from tests.web.conftest import consent_form, enter
from webapp.crowd.models import Assignment, AssignmentItem, Erasure, Judgment, Participant, TrialSlots
from webapp.crowd.templatetags.crowd_text import paragraph_texts
from webapp.lab.export import opaque_id

OWN = {"Origin": "http://testserver"}
SANDBOX = "https://workersandbox.mturk.com"


@pytest.fixture(autouse=True)
def _no_rate_limit(settings):
    settings.CROWD_RATE_LIMIT = 0
    cache.clear()


def judge(client, a, position: int):
    body = {"uuid": str(uuid.uuid4()), "position": position, "choice": "left", "response_ms": 900}
    return client.post(f"/a/{a.token}/judge", json.dumps(body), content_type="application/json",
                       headers={"X-Assignment-Token": str(a.token), **OWN})


def withdraw(client, a, header_token=None, body=None, origin="http://testserver"):
    headers = {"X-Assignment-Token": str(header_token or a.token)}
    if origin:
        headers["Origin"] = origin
    return client.post(f"/a/{a.token}/withdraw", json.dumps({"confirm": True} if body is None else body),
                       content_type="application/json", headers=headers)


def everything() -> dict:
    """Every row a withdrawal could change."""
    return {"participants": list(Participant.objects.order_by("pk").values()),
            "assignments": list(Assignment.objects.order_by("pk").values()),
            "items": AssignmentItem.objects.count(),
            "judgments": list(Judgment.objects.order_by("pk").values_list("pk", flat=True)),
            "slots": dict(TrialSlots.objects.values_list("trial_id", "held")),
            "erasures": Erasure.objects.count()}


# --- paragraphs ----------------------------------------------------------------------------------------


def test_paragraph_texts_join_lines_and_split_at_blank_lines():
    text = "You will compare\nimages of a\r\nstudy.\n\n  \nTake part only\n   if you agree.\n\n\n<b>&</b>"
    assert paragraph_texts(text) == ["You will compare images of a study.", "Take part only if you agree.",
                                     "<b>&</b>"]
    assert paragraph_texts("") == [] and paragraph_texts("\n\n \n") == []


def test_consent_and_instructions_are_paragraphs_escaped(client, experiment_factory):
    exp = experiment_factory(consent_text="We store your\nanswers only.\n\nYou may <script>x</script>\n"
                                          "leave.",
                             instructions_text="Pick the image\nthat looks\nbetter.\n\nTake your time.")
    page = client.get(f"/p/{exp.slug}/").content.decode()
    assert ('<div class="consent" id="consent-text"><p>We store your answers only.</p>\n'
            "<p>You may &lt;script&gt;x&lt;/script&gt; leave.</p></div>") in page
    assert "<br>" not in page and "<script>x" not in page
    a = enter(client, exp)
    task = client.get(f"/a/{a.token}/").content.decode()
    assert ('<div id="instructions-text"><p>Pick the image that looks better.</p>\n'
            "<p>Take your time.</p></div>") in task


# --- decline -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("platform, link, says", [
    ("open", {}, None),
    ("prolific", {"PROLIFIC_PID": "P-DECLINE", "STUDY_ID": "S1", "SESSION_ID": "X1"},
     "return your submission on Prolific"),
    ("mturk", {"workerId": "W-DECLINE", "assignmentId": "A1", "hitId": "H1", "turkSubmitTo": SANDBOX},
     "return the HIT on MTurk"),
])
def test_decline_stores_nothing(experiment_factory, platform, link, says):
    exp = experiment_factory(platform=platform, completion_url="https://app.prolific.com/submissions/complete")
    c = Client(enforce_csrf_checks=True)
    url = f"/p/{exp.slug}/" + ("?" + urlencode(link) if link else "")
    form = consent_form(c, url)
    assert b'id="decline"' in c.get(url).content
    sessions_before = _sessions()
    # the decline button submits the form (with the box ticked or not): decline wins
    r = c.post(url, {**form, "consent": "yes", "decline": "1"}, headers=OWN)
    assert r.status_code == 200 and b'id="declined"' in r.content
    assert b"Nothing about you has been stored" in r.content
    assert (says is None and b"return-instructions" not in r.content) or says.encode() in r.content
    assert not Participant.objects.exists() and not Assignment.objects.exists()
    assert _sessions() == sessions_before and not r.cookies  # no session row, no cookie
    if platform == "mturk":
        assert r.headers["Content-Security-Policy"].startswith("frame-ancestors")  # shown in MTurk's frame


def _sessions() -> int:
    from django.contrib.sessions.models import Session

    return Session.objects.count()


# --- withdrawal ----------------------------------------------------------------------------------------


def test_withdrawal_erases_the_participant_and_keeps_a_record(client, experiment_factory):
    exp = experiment_factory(platform="prolific", slug="wd-prolific",
                             completion_url="https://app.prolific.com/submissions/complete")
    other = enter(Client(), exp, PROLIFIC_PID="P-STAYS", STUDY_ID="S1", SESSION_ID="X2")
    assert judge(Client(), other, 0).status_code == 201
    a = enter(client, exp, PROLIFIC_PID="P-LEAVES", STUDY_ID="S1", SESSION_ID="X1")
    for pos in (0, 1):
        assert judge(client, a, pos).status_code == 201
    pid, platform_id = a.participant_id, a.participant.platform_id
    r = withdraw(client, a)
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["status"] == "withdrawn" and body["judgments_erased"] == 2
    # everything of that participant is gone; the other participant is untouched
    assert not Participant.objects.filter(pk=pid).exists()
    assert not Participant.objects.filter(platform_id="P-LEAVES").exists()
    assert not Assignment.objects.filter(pk=a.pk).exists()
    assert not AssignmentItem.objects.filter(assignment_id=a.pk).exists()
    assert Judgment.objects.filter(trial__experiment=exp).count() == 1
    assert Participant.objects.get(platform_id="P-STAYS").assignments.get().judgments.count() == 1
    # the record: counts, kind, and nothing that names the participant
    record = Erasure.objects.get()
    assert (record.experiment_id, record.kind, record.via, record.by, record.judgments, record.assignments
            ) == (exp.pk, "withdrawal", "participant", None, 2, 1)
    stored = json.dumps(list(Erasure.objects.values()), default=str)
    for secret in (platform_id, "S1", "X1", str(a.token), opaque_id("participant", str(pid)),
                   opaque_id("platform", f"prolific:{platform_id}")):
        assert secret not in stored
    # the slot counts are those of the items left
    from webapp.crowd.assign import count_slots

    assert dict(TrialSlots.objects.filter(trial__experiment=exp).values_list("trial_id", "held")) == \
        count_slots(exp)
    # the page: what was erased and Prolific's return instructions, framed as the study's pages are
    page = client.get(body["page"])
    assert page.status_code == 200 and b'id="withdrawn"' in page.content
    assert b"Your 2 answers" in page.content and b"return your submission on Prolific" in page.content
    assert client.get(f"/p/{exp.slug}/withdrawn/?r=1:forged").status_code == 404
    assert client.get(f"/p/{exp.slug}/withdrawn/").status_code == 404


def test_withdrawal_replayed_or_forged_changes_nothing(client, live_experiment):
    a = enter(client, live_experiment)
    b = enter(Client(), live_experiment)
    assert judge(client, a, 0).status_code == 201
    before = everything()
    # another participant's header, a foreign page, no header, no confirmation, another content type
    assert withdraw(client, a, header_token=b.token).status_code == 403
    assert withdraw(client, a, origin="https://evil.example").status_code == 403
    assert client.post(f"/a/{a.token}/withdraw", json.dumps({"confirm": True}),
                       content_type="application/json").status_code == 403
    assert withdraw(client, a, body={}).status_code == 400
    assert withdraw(client, a, body={"confirm": "yes"}).status_code == 400
    assert client.post(f"/a/{a.token}/withdraw", {"confirm": "true"},
                       headers={"X-Assignment-Token": str(a.token), **OWN}).status_code == 415
    assert client.get(f"/a/{a.token}/withdraw").status_code == 405
    assert withdraw(client, a, header_token=uuid.uuid4()).status_code == 403
    assert everything() == before
    # the real one, then its replay: 404 (nothing is kept that could recognise it), nothing else changes
    assert withdraw(client, a).status_code == 200
    after = everything()
    replay = withdraw(client, a)
    assert replay.status_code == 404 and "withdrawn already" in replay.json()["error"]
    unknown = uuid.uuid4()
    assert client.post(f"/a/{unknown}/withdraw", "{}", content_type="application/json",
                       headers={"X-Assignment-Token": str(unknown)}).status_code == 404
    assert everything() == after and Erasure.objects.count() == 1
    assert Participant.objects.filter(pk=b.participant_id).exists()


def test_open_link_withdrawal_forgets_the_session(client, live_experiment):
    """The open link's id and assignment lived in this browser's session: they go with the withdrawal, so
    opening the link again is a new start, not a resume of what was erased."""
    a = enter(client, live_experiment)
    key = f"crowd_pid_{live_experiment.slug}"
    assert client.session.get(key) == a.participant.platform_id
    assert withdraw(client, a).status_code == 200
    assert key not in client.session and f"crowd_token_{live_experiment.slug}" not in client.session
    again = client.get(f"/p/{live_experiment.slug}/")
    assert again.status_code == 200 and b'id="consent-form"' in again.content


def test_mturk_withdrawal_needs_no_cookie(experiment_factory):
    exp = experiment_factory(platform="mturk")
    c = Client()
    a = enter(c, exp, workerId="W-WD", assignmentId="A-WD", hitId="H1", turkSubmitTo=SANDBOX)
    c.cookies.clear()  # in MTurk's frame the browser sends none
    assert judge(c, a, 0).status_code == 201
    r = withdraw(c, a)
    assert r.status_code == 200 and not r.cookies
    assert not Participant.objects.exists() and not Judgment.objects.exists()
    page = c.get(r.json()["page"])
    assert b"return the HIT on MTurk" in page.content and not page.cookies
    assert page.headers["Content-Security-Policy"].startswith("frame-ancestors")
    # the same worker opening the HIT again starts afresh: nothing is kept to resume
    link = f"/p/{exp.slug}/?" + urlencode({"workerId": "W-WD", "assignmentId": "A-WD", "hitId": "H1",
                                            "turkSubmitTo": SANDBOX})
    assert b'id="consent-form"' in c.get(link).content


def test_withdrawal_of_a_completed_or_paused_assignment(client, live_experiment):
    """Withdrawal is a right at any time: after completion, and while the study is paused."""
    a = enter(client, live_experiment)
    n = a.items.count()
    for item in a.items.order_by("position"):
        assert judge(client, a, item.position).status_code == 201
    done = client.post(f"/a/{a.token}/complete", headers={"X-Assignment-Token": str(a.token)})
    assert done.status_code == 200
    live_experiment.status = "paused"
    live_experiment.save(update_fields=["status"])
    r = withdraw(client, a)
    assert r.status_code == 200 and r.json()["judgments_erased"] == n
    assert not Judgment.objects.exists() and not Participant.objects.exists()


def test_task_page_has_the_withdraw_control(client, live_experiment):
    a = enter(client, live_experiment)
    page = client.get(f"/a/{a.token}/").content.decode()
    for needle in ('id="withdraw"', 'id="withdraw-confirm" hidden', 'id="withdraw-yes"', 'id="withdraw-no"',
                   f'data-withdraw="/a/{a.token}/withdraw"'):
        assert needle in page, needle
