"""Prolific from the lab (webapp/recruit/prolific.py, manage.py prolific) against a local HTTP fake of
Prolific's API (prolific_server.py): the real client, real requests, bodies checked as Prolific documents."""

from __future__ import annotations

import io
import json
import math
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from webapp.recruit import prolific as p
from webapp.recruit.models import Decision, PlatformStudy

SITE = "https://lab.example.org"
LONG_REASON = ("Your answers to the check trials, whose correct answer is unambiguous, were wrong far more "
               "often than chance allows, so the data cannot be used.")


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("prolific", *args, stdout=out)
    return out.getvalue()


def one_line_error(*args: str) -> str:
    with pytest.raises(CommandError) as e:
        run(*args)
    text = str(e.value)
    assert "\n" not in text and text.strip() == text
    return text


@pytest.fixture
def exp(experiment_factory):
    return experiment_factory(platform="prolific", completion_code="C0DE", title="Image pairs")


@pytest.fixture
def client(fake):
    return p.ProlificClient(fake.token, fake.url)


@pytest.fixture
def study(exp, fake) -> PlatformStudy:
    run("create-study", exp.slug, "--reward-cents", "150", "--minutes", "10")
    return PlatformStudy.objects.get(experiment=exp, state="created")


def judge_items(assignment, *, ms: int = 1200) -> None:
    """Answer every item of ``assignment``: the known answer on sentinels/practice, else stimulus_a."""
    from webapp.crowd.models import Judgment

    for item in assignment.items.select_related("trial"):
        trial = item.trial
        chosen = trial.expected or trial.stimulus_a
        left = trial.stimulus_a if item.left_is_a else trial.stimulus_b
        Judgment.objects.create(assignment=assignment, item=item, trial=trial, chosen=chosen,
                                chosen_side="left" if chosen == left else "right", left_stimulus=left,
                                response_ms=ms, client_uuid=uuid.uuid4(), client_created=timezone.now())


def take_part(exp, pid: str, *, ms: int = 1200, complete: bool = True):
    """A Prolific participant's assignment on the site (ORM + create_assignment), judged and completed."""
    from webapp.crowd.assign import create_assignment
    from webapp.crowd.models import Participant

    part = Participant.objects.create(experiment=exp, platform="prolific", platform_id=pid, study_id="S",
                                      session_id=f"SES-{pid}", consent_at=timezone.now())
    a = create_assignment(exp.pk, part)
    judge_items(a, ms=ms)
    if complete:
        a.state, a.completed_at, a.completion_code = "completed", timezone.now(), exp.completion_code
        a.save(update_fields=["state", "completed_at", "completion_code"])
    return a


# -- creating the study --------------------------------------------------------------------------------------

def test_create_study_sends_link_with_placeholders_code_reward_and_places_from_plan(exp, fake):
    from webapp.crowd.models import Assignment, AssignmentItem, Judgment, Participant
    from webapp.experiments.models import Trial

    normal = list(Trial.objects.filter(experiment=exp, kind="normal").order_by("id"))
    target = sum(t.target_judgments or exp.judgments_per_trial for t in normal)
    assert target == 18 and exp.trials_per_assignment == 4
    # 5 judgments already collected, one on each of 5 trials: 13 to go -> 4 places (5 without them)
    part = Participant.objects.create(experiment=exp, platform="prolific", platform_id="PID-0")
    a = Assignment.objects.create(participant=part, experiment=exp, expires_at=timezone.now())
    for pos, t in enumerate(normal[:5]):
        item = AssignmentItem.objects.create(assignment=a, position=pos, trial=t)
        Judgment.objects.create(assignment=a, item=item, trial=t, chosen=t.stimulus_a, chosen_side="left",
                                left_stimulus=t.stimulus_a, response_ms=900, client_uuid=uuid.uuid4())

    out = run("create-study", exp.slug, "--reward-cents", "150", "--minutes", "12")

    [call] = fake.calls("create-study")
    body = call.body
    assert call.authorization == f"Token {fake.token}"
    assert body["external_study_url"] == (
        f"{SITE}/p/{exp.slug}/?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&STUDY_ID={{{{%STUDY_ID%}}}}"
        f"&SESSION_ID={{{{%SESSION_ID%}}}}")
    assert body["prolific_id_option"] == "url_parameters"
    [code] = body["completion_codes"]
    assert code["code"] == "C0DE" and code["code_type"] == "COMPLETED" and code["actions"]
    assert body["reward"] == 150 and body["estimated_completion_time"] == 12
    assert body["total_available_places"] == math.ceil((target - 5) / 4) == 4
    assert body["name"] == "Image pairs" and body["description"]
    row = PlatformStudy.objects.get(experiment=exp)
    assert row.state == "created" and row.platform == "prolific" and not row.sandbox
    assert row.request_token in body["internal_name"]
    assert row.remote_id in fake.studies and fake.studies[row.remote_id]["status"] == "UNPUBLISHED"
    assert row.remote_id in out and "4 places" in out and "(draft)" in out
    # one study per experiment: a second create is refused and sends nothing
    assert "already has Prolific study" in one_line_error("create-study", exp.slug, "--reward-cents", "150",
                                                          "--minutes", "12")
    assert len(fake.calls("create-study")) == 1


def test_url_option_and_publish(exp, fake):
    run("create-study", exp.slug, "--reward-cents", "90", "--minutes", "5", "--places", "7",
        "--url", "https://other.example.org/p/x/?src=prolific", "--publish")
    body = fake.calls("create-study")[0].body
    assert body["external_study_url"] == ("https://other.example.org/p/x/?src=prolific&PROLIFIC_PID="
                                          "{{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}")
    assert body["total_available_places"] == 7
    [publish] = fake.calls("publish-study")
    assert publish.body == {"action": "PUBLISH"}
    row = PlatformStudy.objects.get(experiment=exp)
    assert fake.studies[row.remote_id]["status"] == "ACTIVE"


@pytest.mark.parametrize("fields, words", [
    ({"platform": "open"}, "not on Prolific"),
    ({"platform": "mturk"}, "not on Prolific"),
    ({"platform": "prolific", "completion_code": ""}, "no completion code"),
])
def test_other_platform_or_no_completion_code_is_refused_and_calls_nothing(experiment_factory, fake, client,
                                                                           fields, words):
    other = experiment_factory(**{**fields, "completion_code": "C0DE"})
    other.completion_code = fields.get("completion_code", "C0DE")  # the spec refuses a Prolific one without
    other.save(update_fields=["completion_code"])
    assert words in one_line_error("create-study", other.slug, "--reward-cents", "100", "--minutes", "5")
    with pytest.raises(p.ProlificError, match=words):
        p.create_study(other, client, url=None, reward=100, minutes=5, description="d")
    assert fake.requests == []
    assert not PlatformStudy.objects.exists()


def test_no_site_url_nor_url_and_no_token_are_one_line_errors(exp, fake, settings, monkeypatch):
    settings.SITE_URL = ""
    assert "set SITE_URL" in one_line_error("create-study", exp.slug, "--reward-cents", "100",
                                            "--minutes", "5")
    monkeypatch.delenv("PROLIFIC_TOKEN")
    assert "PROLIFIC_TOKEN" in one_line_error("list", exp.slug)
    assert fake.requests == [] and not PlatformStudy.objects.exists()


def test_publish_needs_the_study_live_here_and_sends_nothing_otherwise(experiment_factory, fake):
    draft = experiment_factory(platform="prolific", completion_code="C0DE", status="draft")
    assert "set it live first" in one_line_error("create-study", draft.slug, "--reward-cents", "100",
                                                 "--minutes", "5", "--publish")
    assert fake.requests == [] and not PlatformStudy.objects.exists()


def test_bad_token_is_prolifics_message_on_one_line_and_the_record_failed(exp, fake, monkeypatch):
    monkeypatch.setenv("PROLIFIC_TOKEN", "wrong-token")
    text = one_line_error("create-study", exp.slug, "--reward-cents", "100", "--minutes", "5")
    assert text == "Prolific: Invalid token. (HTTP 401)"
    row = PlatformStudy.objects.get(experiment=exp)
    assert row.state == "failed" and row.error == text and row.remote_id == ""
    assert fake.studies == {}
    # a failed row does not block a later, correct attempt
    monkeypatch.setenv("PROLIFIC_TOKEN", fake.token)
    run("create-study", exp.slug, "--reward-cents", "100", "--minutes", "5")
    assert PlatformStudy.objects.filter(experiment=exp, state="created").count() == 1


def test_prolific_validation_errors_are_one_line(exp, fake, client):
    with pytest.raises(p.ProlificError) as e:
        client.create_study({"name": "x"})
    text = str(e.value)
    assert "\n" not in text and text.startswith("Prolific: ") and text.endswith("(HTTP 400)")
    assert "external_study_url: This field is required." in text and "reward:" in text
    assert e.value.status == 400 and not e.value.unknown


def test_connection_failure_is_one_line(exp):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = p.ProlificClient("t", f"http://127.0.0.1:{port}/api/v1/", timeout=(2, 2))
    with pytest.raises(p.ProlificError) as e:
        dead.list_studies()
    assert "\n" not in str(e.value) and str(e.value).startswith("Prolific: no connection to http://127.0.0.1")
    assert e.value.status is None and not e.value.unknown  # refused: it never left


def test_retry_after_dropped_answer_finds_the_study_by_internal_name_never_two(exp, fake):
    fake.drop["create-study"] = "after"  # Prolific makes the study, the answer is lost
    text = one_line_error("create-study", exp.slug, "--reward-cents", "100", "--minutes", "5")
    assert "may or may not exist on Prolific" in text and "run create-study again" in text
    row = PlatformStudy.objects.get(experiment=exp)
    assert row.state == "requested" and row.remote_id == "" and row.error
    assert len(fake.studies) == 1

    run("create-study", exp.slug, "--reward-cents", "100", "--minutes", "5")

    row.refresh_from_db()
    [made] = fake.studies
    assert row.state == "created" and row.remote_id == made and row.error == ""
    assert len(fake.calls("create-study")) == 1 and len(fake.calls("get-studies")) == 1
    assert PlatformStudy.objects.filter(experiment=exp).count() == 1


def test_retry_after_create_that_never_arrived_creates_with_the_same_token(exp, fake):
    fake.drop["create-study"] = "before"
    one_line_error("create-study", exp.slug, "--reward-cents", "100", "--minutes", "5")
    assert fake.studies == {}
    token = PlatformStudy.objects.get(experiment=exp).request_token
    run("create-study", exp.slug, "--reward-cents", "100", "--minutes", "5")
    [made] = fake.studies.values()
    assert token in made["internal_name"]
    assert PlatformStudy.objects.get(experiment=exp).remote_id == made["id"]


def test_a_create_in_flight_is_not_doubled(exp, fake):
    PlatformStudy.objects.create(experiment=exp, platform="prolific", sandbox=False, request_token="lab-x",
                                 state="requested")
    assert "in flight" in one_line_error("create-study", exp.slug, "--reward-cents", "100", "--minutes", "5")
    assert fake.requests == []
    # one whose process died long ago is an unknown outcome: looked for, then created with its token
    PlatformStudy.objects.update(created=timezone.now() - timedelta(hours=1))
    run("create-study", exp.slug, "--reward-cents", "100", "--minutes", "5")
    assert [r.operation for r in fake.requests] == ["get-studies", "create-study"]
    assert "lab-x" in fake.calls("create-study")[0].body["internal_name"]


# -- status --------------------------------------------------------------------------------------------------

def test_sync_status_publishes_pauses_resumes_and_stops(exp, study, fake, client):
    remote = fake.studies[study.remote_id]
    assert p.sync_status(exp, "live", client) == f"published Prolific study {study.remote_id}"
    assert remote["status"] == "ACTIVE"
    assert p.sync_status(exp, "paused", client).startswith("paused")
    assert remote["status"] == "PAUSED"
    assert p.sync_status(exp, "live", client).startswith("resumed")
    assert remote["status"] == "ACTIVE"
    assert "nothing to do" in p.sync_status(exp, "live", client)
    assert p.sync_status(exp, "closed", client).startswith("stopped")
    assert remote["status"] == "COMPLETED"
    assert [c.body["action"] for c in fake.calls("publish-study")] == ["PUBLISH", "PAUSE", "START", "STOP"]


def test_sync_status_without_a_linked_study_calls_nothing(exp, fake, client):
    assert p.sync_status(exp, "live", client) is None
    assert fake.requests == []


def test_publish_and_pause_commands(exp, study, fake):
    assert "published" in run("publish", exp.slug)
    assert "paused" in run("pause", exp.slug)
    assert fake.studies[study.remote_id]["status"] == "PAUSED"
    exp.status = "paused"
    exp.save(update_fields=["status"])
    assert "set it live first" in one_line_error("publish", exp.slug)
    assert fake.studies[study.remote_id]["status"] == "PAUSED"


# -- review and decisions ------------------------------------------------------------------------------------

@pytest.fixture
def crowd(exp, study, fake):
    """Submissions: good (completed, clean), fast (completed, too fast), gone (not completed here), stranger
    (no assignment here), busy (still active on Prolific)."""
    take_part(exp, "PID-good")
    take_part(exp, "PID-fast", ms=50)
    take_part(exp, "PID-gone", complete=False)
    return {name: fake.add_submission(study.remote_id, f"PID-{name}", status)
            for name, status in [("good", "AWAITING REVIEW"), ("fast", "AWAITING REVIEW"),
                                 ("gone", "AWAITING REVIEW"), ("stranger", "AWAITING REVIEW"),
                                 ("busy", "ACTIVE")]}


def test_list_shows_every_submission_with_its_status(exp, crowd, fake):
    out = run("list", exp.slug)
    assert len(fake.calls("get-study-submissions")) == 3  # 5 submissions, 2 a page: followed `next`
    for name, sid in crowd.items():
        assert sid in out and f"PID-{name}" in out
    assert "ACTIVE" in out and "5 submissions" in out


def test_review_proposes_approve_and_reject_with_qc_reasons(exp, crowd, fake, client):
    proposals = {x.submission.worker_id: x for x in p.review(exp, client)}
    assert set(proposals) == {"PID-good", "PID-fast", "PID-gone", "PID-stranger"}  # not the one still active
    assert proposals["PID-good"].action == "approve" and proposals["PID-good"].reasons == []
    assert proposals["PID-fast"].action == "reject"
    assert any("faster than 200 ms" in r for r in proposals["PID-fast"].reasons)
    assert proposals["PID-gone"].action == "reject"
    assert "not completed here" in proposals["PID-gone"].reasons[0]
    assert proposals["PID-stranger"].action == "manual"

    data = json.loads(run("review", exp.slug, "--json"))
    assert {d["submission_id"]: d["action"] for d in data} == {
        crowd["good"]: "approve", crowd["fast"]: "reject", crowd["gone"]: "reject",
        crowd["stranger"]: "manual"}
    assert fake.calls("transition-submission") == []  # a review sends nothing


def test_approve_twice_sends_once(exp, crowd, fake):
    sid = crowd["good"]
    assert f"{sid}  approve: sent" in run("approve", exp.slug, sid)
    assert fake.submissions[sid]["status"] == "APPROVED"
    assert "approve: already" in run("approve", exp.slug, sid)
    fake.submissions[sid]["status"] = "AWAITING REVIEW"  # even while Prolific still shows it undecided
    assert "approved here on" in run("approve", exp.slug, sid)
    [call] = fake.calls("transition-submission")
    assert call.body == {"action": "APPROVE"}
    d = Decision.objects.get(submission_id=sid)
    assert (d.action, d.state, d.worker_id, d.platform) == ("approve", "done", "PID-good", "prolific")
    # approved there already (by hand on Prolific): recorded here, nothing sent
    fake.submissions[crowd["fast"]]["status"] = "APPROVED"
    assert "approved on Prolific before" in run("approve", exp.slug, crowd["fast"])
    assert len(fake.calls("transition-submission")) == 1
    assert Decision.objects.get(submission_id=crowd["fast"]).state == "done"
    # a submission still in progress, or of another study, is not sent
    assert "it is ACTIVE on Prolific" in one_line_error("approve", exp.slug, crowd["busy"])
    assert "not a submission of Prolific study" in one_line_error("approve", exp.slug, "nope")
    assert len(fake.calls("transition-submission")) == 1


def test_approve_whose_answer_was_lost_is_recorded_on_retry_not_sent_again(exp, crowd, fake):
    sid = crowd["good"]
    fake.drop["transition-submission"] = "after"
    text = one_line_error("approve", exp.slug, sid)
    assert "no answer from" in text and "run it again" in text
    assert Decision.objects.get(submission_id=sid).state == "sent"
    assert fake.submissions[sid]["status"] == "APPROVED"
    assert "approved on Prolific before; recorded here" in run("approve", exp.slug, sid)
    assert len(fake.calls("transition-submission")) == 1
    assert Decision.objects.get(submission_id=sid).state == "done"


def test_approve_all_proposed(exp, crowd, fake):
    out = run("approve", exp.slug, "--all-proposed")
    assert f"{crowd['good']}  approve: sent" in out
    paths = [c.path for c in fake.calls("transition-submission")]
    assert paths == [f"submissions/{crowd['good']}/transition/"]
    assert "give submission ids or --all-proposed" in one_line_error("approve", exp.slug)


def test_reject_with_too_short_message_is_refused_by_prolific_on_one_line(exp, crowd, fake):
    sid = crowd["fast"]
    text = one_line_error("reject", exp.slug, sid, "--reason", "Too fast.", "--category", "TOO_QUICKLY")
    assert "message: The rejection message must be at least 100 characters long. (HTTP 400)" in text
    assert fake.submissions[sid]["status"] == "AWAITING REVIEW"
    d = Decision.objects.get(submission_id=sid, action="reject")
    assert d.state == "failed" and "at least 100 characters" in d.error
    # the same submission again with a proper message: the row is reused, the rejection goes through
    out = run("reject", exp.slug, sid, "--reason", LONG_REASON, "--category", "FAILED_CHECK")
    assert "reject: sent" in out
    assert fake.submissions[sid]["status"] == "REJECTED"
    assert fake.submissions[sid]["rejection"] == {"message": LONG_REASON, "category": "FAILED_CHECK"}
    d.refresh_from_db()
    assert d.state == "done" and d.reason == LONG_REASON and d.error == ""
    assert "already rejected here" in one_line_error("approve", exp.slug, sid)
    assert len(fake.calls("transition-submission")) == 2


def test_reject_all_proposed_uses_qc_reasons_and_categories(exp, crowd, fake):
    out = run("reject", exp.slug, "--all-proposed")
    assert f"{crowd['fast']}  reject: sent" in out and f"{crowd['gone']}  reject: sent" in out
    bodies = {c.path.split("/")[1]: c.body for c in fake.calls("transition-submission")}
    assert set(bodies) == {crowd["fast"], crowd["gone"]}
    fast = bodies[crowd["fast"]]
    assert fast["rejection_category"] == "TOO_QUICKLY" and "faster than 200 ms" in fast["message"]
    assert len(fast["message"]) >= 100
    assert bodies[crowd["gone"]]["rejection_category"] == "NO_CODE"
    assert fake.submissions[crowd["good"]]["status"] == "AWAITING REVIEW"


def test_request_return(exp, crowd, fake):
    sid = crowd["gone"]
    assert "return: sent" in run("return", exp.slug, sid, "--reason", "Didn't finish the study")
    [call] = fake.calls("request-submission-return")
    assert call.body == {"request_return_reasons": ["Didn't finish the study"]}
    assert fake.submissions[sid]["return_requested"]
    assert "return: already" in run("return", exp.slug, sid, "--reason", "Didn't finish the study")
    assert len(fake.calls("request-submission-return")) == 1
    d = Decision.objects.get(submission_id=sid, action="return")
    assert d.state == "done" and d.reason == "Didn't finish the study"


def test_bonus_sets_up_and_pays_a_bulk_bonus(exp, crowd, fake, study):
    sid = crowd["good"]
    out = run("bonus", exp.slug, sid, "--amount", "0.50", "--reason", "careful work")
    [setup] = fake.calls("create-bonus-payments")
    assert setup.body == {"study_id": study.remote_id, "csv_bonuses": "PID-good,0.50\n"}
    [bulk] = fake.bonuses.values()
    assert bulk["paid"] and bulk["amount"] == 50.0
    [pay] = fake.calls("pay-bonus-payments")
    assert pay.path == f"bulk-bonus-payments/{bulk['id']}/pay/"
    d = Decision.objects.get(submission_id=sid, action="bonus")
    assert (d.state, d.amount, d.remote_id, d.worker_id, d.reason) == (
        "done", Decimal("0.50"), bulk["id"], "PID-good", "careful work")
    assert bulk["id"] in out
    # by participant id, a second bonus is a second payment
    run("bonus", exp.slug, "PID-good", "--amount", "0.25", "--reason", "more")
    assert len(fake.bonuses) == 2 and all(b["paid"] for b in fake.bonuses.values())


def test_bonus_whose_payment_failed_is_paid_on_retry_not_set_up_twice(exp, crowd, fake):
    sid = crowd["good"]
    fake.drop["pay-bonus-payments"] = "before"
    text = one_line_error("bonus", exp.slug, sid, "--amount", "1.20", "--reason", "r")
    [bulk] = fake.bonuses.values()
    assert f"bulk bonus payment {bulk['id']}" in text and "is set up on Prolific" in text
    assert not bulk["paid"]
    d = Decision.objects.get(submission_id=sid, action="bonus")
    assert d.state == "sent" and d.remote_id == bulk["id"]
    run("bonus", exp.slug, sid, "--amount", "1.20", "--reason", "r")
    assert len(fake.calls("create-bonus-payments")) == 1 and len(fake.bonuses) == 1 and bulk["paid"]
    d.refresh_from_db()
    assert d.state == "done"


def test_bonus_refused_locally_sends_nothing(exp, crowd, fake):
    before = len(fake.requests)
    assert "at most 2 decimals" in one_line_error("bonus", exp.slug, crowd["good"], "--amount", "0.505",
                                                  "--reason", "r")
    assert "neither a submission nor a participant" in one_line_error("bonus", exp.slug, "nobody",
                                                                      "--amount", "1", "--reason", "r")
    assert {r.operation for r in fake.requests[before:]} == {"get-study-submissions"}  # looking it up only
