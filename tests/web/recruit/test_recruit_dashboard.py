"""The study's Recruiting page and the status sync, against the fake Prolific (HTTP) and MTurk's API model
(botocore's Stubber): what a researcher does on the dashboard reaches the platform once, and a platform's
refusal shows on the page and changes nothing here."""

from __future__ import annotations

import pytest
from django.utils import timezone

from webapp.recruit.models import Decision, PlatformStudy

SITE = "https://lab.example.org"


@pytest.fixture
def owner(client, django_user_model, experiment_factory):
    user = django_user_model.objects.get(username="crowd-owner")  # made by experiment_factory
    client.force_login(user)
    return user


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def _completed(exp, pid: str, *, ms: int = 1200):
    """A Prolific participant's completed assignment, every item judged (``ms`` per answer)."""
    import uuid

    from webapp.crowd.assign import create_assignment
    from webapp.crowd.models import Judgment, Participant

    part = Participant.objects.create(experiment=exp, platform="prolific", platform_id=pid,
                                      consent_at=timezone.now())
    a = create_assignment(exp.pk, part)
    for item in a.items.select_related("trial"):
        t = item.trial
        chosen, left = t.expected or t.stimulus_a, t.stimulus_a if item.left_is_a else t.stimulus_b
        Judgment.objects.create(assignment=a, item=item, trial=t, chosen=chosen, left_stimulus=left,
                                chosen_side="left" if chosen == left else "right", response_ms=ms,
                                client_uuid=uuid.uuid4())
    a.state, a.completed_at, a.completion_code = "completed", timezone.now(), exp.completion_code
    a.save(update_fields=["state", "completed_at", "completion_code"])
    return a


def test_recruiting_page_access(client, experiment_factory, django_user_model):
    exp = experiment_factory(platform="prolific", completion_code="C0DE")
    url = f"/lab/e/{exp.slug}/recruit/"
    assert client.get(url)["Location"].startswith("/lab/login/")
    assert client.post(url + "create/").status_code == 302 and not PlatformStudy.objects.exists()
    other = django_user_model.objects.create_user("other", password="pw")
    client.force_login(other)
    assert client.get(url).status_code == 404  # another researcher's study does not exist for them
    assert client.post(url + "create/", {"reward_cents": "100", "minutes": "5"}).status_code == 404
    client.force_login(django_user_model.objects.get(username="crowd-owner"))
    assert client.get(url).status_code == 200
    assert client.get(f"/lab/e/{exp.slug}/")  # the study page links to it ...
    assert f'href="{url}"'.encode() in client.get(f"/lab/e/{exp.slug}/").content
    open_link = experiment_factory()  # ... but an open link has nothing to drive
    assert client.get(f"/lab/e/{open_link.slug}/recruit/").status_code == 404
    assert b'id="recruiting"' not in client.get(f"/lab/e/{open_link.slug}/").content
    assert client.post(url + "nonsense/").status_code == 404


def test_prolific_from_the_dashboard(client, owner, experiment_factory, fake):
    exp = experiment_factory(platform="prolific", completion_code="C0DE", status="draft")
    page = f"/lab/e/{exp.slug}/recruit/"
    r = client.post(page + "create/", {"reward_cents": "150", "minutes": "10", "places": ""}, follow=True)
    study = PlatformStudy.objects.get(experiment=exp, platform="prolific")
    assert study.state == "created" and fake.studies[study.remote_id]["status"] == "UNPUBLISHED"
    assert any(study.remote_id in m for m in _messages(r))
    [created] = fake.calls("create-study")
    assert created.body["external_study_url"].startswith(f"{SITE}/p/{exp.slug}/?PROLIFIC_PID=")
    # live here -> published there; paused here -> paused there
    r = client.post(f"/lab/e/{exp.slug}/status/", {"status": "live"}, follow=True)
    exp.refresh_from_db()
    assert exp.status == "live" and fake.studies[study.remote_id]["status"] == "ACTIVE"
    assert any("published Prolific study" in m for m in _messages(r))
    client.post(f"/lab/e/{exp.slug}/status/", {"status": "paused"})
    exp.refresh_from_db()
    assert exp.status == "paused" and fake.studies[study.remote_id]["status"] == "PAUSED"
    # a refusal there (a revoked token) keeps the status here, and says why on the page
    fake.token = "revoked"
    r = client.post(f"/lab/e/{exp.slug}/status/", {"status": "live"}, follow=True)
    exp.refresh_from_db()
    assert exp.status == "paused" and fake.studies[study.remote_id]["status"] == "PAUSED"
    err = _messages(r)[-1]  # after the pause's own message, not yet shown
    assert err == "Status not changed: Prolific: Invalid token. (HTTP 401)"


def test_prolific_review_approve_reject_and_bonus_from_the_dashboard(client, owner, experiment_factory, fake):
    exp = experiment_factory(platform="prolific", completion_code="C0DE")
    page = f"/lab/e/{exp.slug}/recruit/"
    client.post(page + "create/", {"reward_cents": "150", "minutes": "10"})
    study = PlatformStudy.objects.get(experiment=exp)
    _completed(exp, "GOOD")
    _completed(exp, "FAST", ms=10)  # every answer faster than the study's minimum: QC flags it
    good = fake.add_submission(study.remote_id, "GOOD")
    fast = fake.add_submission(study.remote_id, "FAST")
    stranger = fake.add_submission(study.remote_id, "STRANGER")
    assert not fake.calls("get-study-submissions") and b"Fetch the submissions" in client.get(page).content
    r = client.get(page + "?review=1")
    rows = {p.submission.submission_id: p for p in r.context["proposals"]}
    assert (rows[good].action, rows[fast].action, rows[stranger].action) == ("approve", "reject", "manual")
    assert "faster than" in rows[fast].reasons[0]
    client.post(page + "approve-proposed/")
    client.post(page + "approve-proposed/")  # twice: sent once
    assert [c.path for c in fake.calls("transition-submission")] == [f"submissions/{good}/transition/"]
    client.post(page + "reject-proposed/")
    assert fake.submissions[fast]["status"] == "REJECTED" and fake.submissions[good]["status"] == "APPROVED"
    [rej] = [c.body for c in fake.calls("transition-submission") if c.body["action"] == "REJECT"]
    assert "faster than" in rej["message"] and rej["rejection_category"] == "TOO_QUICKLY"
    r = client.post(page + "decide/", {"verdict": "return", "submission": [stranger], "reason": "No code"},
                    follow=True)
    assert fake.submissions[stranger]["return_requested"] and any("asked to return" in m or "return" in m
                                                                  for m in _messages(r))
    r = client.post(page + "bonus/", {"submission": good, "amount": "0.40", "reason": "Careful work"},
                    follow=True)
    [bonus] = fake.calls("create-bonus-payments")
    assert bonus.body["csv_bonuses"].strip() == "GOOD,0.40" and fake.calls("pay-bonus-payments")
    assert Decision.objects.filter(experiment=exp, action="bonus", state="done").count() == 1
    # a refusal is one line on the page and records nothing more
    r = client.post(page + "bonus/", {"submission": good, "amount": "-1", "reason": "x"}, follow=True)
    [err] = _messages(r)
    assert "\n" not in err and "amount" in err
    assert Decision.objects.filter(experiment=exp, action="bonus").count() == 1
    decisions = client.get(page).content.decode()
    assert good in decisions and "approve" in decisions and "bonus" in decisions
