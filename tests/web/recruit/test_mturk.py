"""``manage.py mturk`` and ``webapp.recruit.mturk`` against botocore's Stubber: every call is checked against
MTurk's real API model (parameter names and types, response shapes), and nothing reaches the network."""

from __future__ import annotations

import io
import json
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import NoCredentialsError, ReadTimeoutError
from botocore.stub import ANY, Stubber
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

import webapp.recruit.mturk as service
from webapp.recruit.models import Decision, PlatformStudy

REAL_CLIENT = service.client  # the tests replace service.client; these build the real thing
SITE = "https://lab.example.org"
HIT_ID = "3" + "H" * 29  # MTurk's ids are 30 upper-case letters and digits
OTHER_HIT = "3" + "Q" * 29
NS = "{" + service.QUESTION_NS + "}"


class Capture:
    """An expected parameter that matches anything and keeps what was sent."""

    value = None

    def __eq__(self, other):
        self.value = other
        return True

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = None


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Dummy credentials and no shared AWS files: boto3 can build a client, nothing real is used."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@dataclass
class Turk:
    """Stubbed sandbox and live clients; ``calls``: the (live, profile) of each ``client()`` request;
    ``sent``: every operation that reached the stubs."""

    sandbox: Stubber
    live: Stubber
    calls: list = field(default_factory=list)
    sent: list = field(default_factory=list)

    def done(self) -> None:
        self.sandbox.assert_no_pending_responses()
        self.live.assert_no_pending_responses()

    def fail_next(self, operation: str, exc: Exception, live: bool = False) -> None:
        """The next ``operation`` raises ``exc`` before MTurk answers (a timeout, missing credentials)."""
        stub = self.live if live else self.sandbox
        state = {"armed": True}

        def boom(model, **kwargs):
            if state["armed"] and model.name == operation:
                state["armed"] = False
                raise exc

        # ahead of the Stubber's own first handler (which refuses a call it has no answer queued for):
        # handlers on one event name run in the order they were registered
        stub.deactivate()
        stub.client.meta.events.register_first("before-parameter-build.*.*", boom)
        stub.activate()


@pytest.fixture
def turk(aws_env, monkeypatch):
    t = None
    stubs = {}
    for live in (False, True):
        c = REAL_CLIENT(live=live)
        c.meta.events.register("before-call.*.*", lambda model, **kw: t.sent.append(model.name))
        stubs[live] = Stubber(c)
        stubs[live].activate()
    t = Turk(stubs[False], stubs[True])

    def fake_client(live: bool = False, profile: str | None = None):
        t.calls.append((live, profile))
        return stubs[live].client

    monkeypatch.setattr(service, "client", fake_client)
    yield t
    for s in stubs.values():
        s.deactivate()


@pytest.fixture
def site(settings):
    settings.SITE_URL = SITE
    return SITE


@pytest.fixture
def mturk_exp(experiment_factory, site):
    """A live MTurk study: 6 normal trials × 3 judgments = 18 to collect, 4 trials per assignment."""
    return experiment_factory(platform="mturk", assignment_timeout_minutes=45)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("mturk", *args, stdout=out)
    return out.getvalue()


def hit_response(exp, token: str = "", hit_id: str = HIT_ID, n: int = 5) -> dict:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    return {"HIT": {
        "HITId": hit_id, "HITTypeId": "TYPE" + "T" * 26, "HITGroupId": "GRP" + "G" * 27, "Title": exp.title,
        "MaxAssignments": n, "Reward": "0.50", "HITStatus": "Assignable",
        "RequesterAnnotation": service._annotation(exp, token) if token else "", "CreationTime": now,
        "Expiration": now + timedelta(days=3), "NumberOfAssignmentsAvailable": n,
        "NumberOfAssignmentsPending": 0, "NumberOfAssignmentsCompleted": 0}}


def expected_create(exp, question: Capture, token: Capture, n: int = 5, reward: str = "0.50") -> dict:
    return {"MaxAssignments": n, "AutoApprovalDelayInSeconds": 72 * 3600, "LifetimeInSeconds": 72 * 3600,
            "AssignmentDurationInSeconds": exp.assignment_timeout_minutes * 60, "Reward": reward,
            "Title": exp.title, "Keywords": ANY, "Description": exp.question, "Question": question,
            "RequesterAnnotation": ANY, "UniqueRequestToken": token}


def recorded_hit(exp, hit_id: str = HIT_ID, sandbox: bool = True) -> PlatformStudy:
    return PlatformStudy.objects.create(experiment=exp, platform="mturk", sandbox=sandbox,
                                        request_token=uuid.uuid4().hex, remote_id=hit_id, state="created")


def mturk_worker(exp, worker: str, aid: str, *, sentinel_right: bool = True, state: str = "completed"):
    """A participant who came through HIT_ID as ``worker`` on MTurk assignment ``aid``: 4 normal trials and
    one sentinel judged (the sentinel right or wrong), response times well above the study's minimum."""
    from webapp.crowd.models import Assignment, AssignmentItem, Judgment, Participant

    now = timezone.now()
    p = Participant.objects.create(experiment=exp, platform="mturk", platform_id=worker, consent_at=now)
    a = Assignment.objects.create(participant=p, experiment=exp, state=state, mturk_assignment_id=aid,
                                  hit_id=HIT_ID, expires_at=now + timedelta(hours=1),
                                  completed_at=now if state == "completed" else None)
    trials = list(exp.trials.filter(kind="normal").order_by("id")[:4])
    trials += list(exp.trials.filter(kind="sentinel").order_by("id")[:1])
    for pos, t in enumerate(trials):
        item = AssignmentItem.objects.create(assignment=a, position=pos, trial=t, left_is_a=True)
        chosen = t.stimulus_a
        if t.kind == "sentinel":
            wrong = t.stimulus_a if t.expected_id == t.stimulus_b_id else t.stimulus_b
            chosen = t.expected if sentinel_right else wrong
        Judgment.objects.create(assignment=a, item=item, trial=t, chosen=chosen,
                                chosen_side="left" if chosen == t.stimulus_a else "right",
                                left_stimulus=t.stimulus_a, response_ms=1500, client_uuid=uuid.uuid4())
    return a


def assignment_response(aid: str, worker: str, status: str = "Submitted", hit_id: str = HIT_ID) -> dict:
    return {"AssignmentId": aid, "WorkerId": worker, "HITId": hit_id, "AssignmentStatus": status,
            "SubmitTime": datetime(2026, 12, 7, 13, 0, tzinfo=UTC)}


def stub_get_assignment(stub: Stubber, aid: str, worker: str, status: str = "Submitted",
                        hit_id: str = HIT_ID) -> None:
    stub.add_response("get_assignment", {"Assignment": assignment_response(aid, worker, status, hit_id)},
                      {"AssignmentId": aid})


def stub_listing(stub: Stubber, rows: list[tuple[str, str, str]]) -> None:
    """ListAssignmentsForHIT answering ``rows`` (aid, worker, status) on two pages."""
    half = len(rows) // 2
    for i, page in enumerate((rows[:half], rows[half:])):
        resp = {"Assignments": [assignment_response(*r) for r in page], "NumResults": len(page)}
        if i == 0:
            resp["NextToken"] = "page-2"
        params = {"HITId": HIT_ID, "MaxResults": 100,
                  "AssignmentStatuses": ["Submitted", "Approved", "Rejected"]}
        if i == 1:
            params["NextToken"] = "page-2"
        stub.add_response("list_assignments_for_hit", resp, params)


# --- client, question, plan ----------------------------------------------------------------------------


def test_client_builds_sandbox_by_default_and_live_on_request(aws_env):
    sandbox, live = REAL_CLIENT(), REAL_CLIENT(live=True)
    assert sandbox.meta.endpoint_url == "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
    assert live.meta.endpoint_url == "https://mturk-requester.us-east-1.amazonaws.com"
    assert sandbox.meta.region_name == live.meta.region_name == "us-east-1"
    assert service.is_live(live) and not service.is_live(sandbox)
    with pytest.raises(service.MTurkError, match=r"^MTurk: .*nope.* \(ProfileNotFound\)$"):
        REAL_CLIENT(profile="nope")


def test_external_question_xml_escapes_the_url():
    url = "https://lab.example.org/p/s/?a=1&b=<2>&c=\"x\""
    root = ET.fromstring(service.external_question_xml(url, 720))
    assert root.tag == NS + "ExternalQuestion"
    assert root.find(NS + "ExternalURL").text == url
    assert root.find(NS + "FrameHeight").text == "720"
    assert "&amp;" in service.external_question_xml(url)


def test_planned_assignments_cover_the_missing_judgments(mturk_exp):
    assert service.planned_assignments(mturk_exp) == 5  # 18 missing / 4 per assignment, rounded up
    mturk_worker(mturk_exp, "W1", "A1")  # 4 normal judgments collected -> 14 missing
    assert service.planned_assignments(mturk_exp) == 4
    mturk_exp.trials.filter(kind="normal").update(target_judgments=1)
    assert service.planned_assignments(mturk_exp) == 1  # 6 targets of 1, 4 met: 2 missing -> 1
    mturk_worker(mturk_exp, "W2", "A2")
    assert service.planned_assignments(mturk_exp) == 1  # nothing missing: still at least one


# --- create-hit ------------------------------------------------------------------------------------------


def test_create_hit_sends_the_question_reward_plan_duration_and_token(turk, mturk_exp):
    question, token = Capture(), Capture()
    turk.sandbox.add_response("create_hit", hit_response(mturk_exp, "x"),
                              expected_create(mturk_exp, question, token))
    out = run("create-hit", mturk_exp.slug, "--reward", "0.50", "--frame-height", "800")
    turk.done()

    root = ET.fromstring(question.value)
    assert root.find(NS + "ExternalURL").text == f"{SITE}/p/{mturk_exp.slug}/"
    assert root.find(NS + "FrameHeight").text == "800"
    row = PlatformStudy.objects.get(experiment=mturk_exp)
    assert (row.state, row.remote_id, row.sandbox) == ("created", HIT_ID, True)
    assert token.value == row.request_token and len(token.value) <= 64
    assert row.details["hit_type_id"].startswith("TYPE")
    assert out.splitlines()[0].startswith("SANDBOX")
    assert "5 × $0.50 = $2.50 + MTurk fee 20% $0.50 = $3.00" in out
    assert f"HIT {HIT_ID}" in out
    assert turk.sent == ["CreateHIT"] and turk.calls == [(False, None)]


def test_create_hit_live_uses_the_live_client_and_prints_the_cost_first(turk, mturk_exp):
    turk.live.add_response("create_hit", hit_response(mturk_exp, "x", n=12),
                           expected_create(mturk_exp, Capture(), Capture(), n=12))
    out = run("create-hit", mturk_exp.slug, "--reward", "0.50", "--assignments", "12", "--live",
              "--profile", "lab")
    turk.done()
    assert turk.calls == [(True, "lab")]
    assert out.splitlines()[0].startswith("LIVE (real money)")
    cost = "12 × $0.50 = $6.00 + MTurk fee 40% $2.40 = $8.40"  # 10 or more assignments: 40 %
    assert cost in out and out.index(cost) < out.index(f"HIT {HIT_ID}")
    assert PlatformStudy.objects.get(experiment=mturk_exp).sandbox is False


@pytest.mark.parametrize("second", ["made-now", "named-in-refusal", "found-by-annotation"])
def test_retry_after_no_answer_reuses_the_token_and_never_makes_two_hits(turk, mturk_exp, second):
    turk.fail_next("CreateHIT", ReadTimeoutError(endpoint_url=service.SANDBOX_ENDPOINT))
    with pytest.raises(CommandError) as err:
        run("create-hit", mturk_exp.slug, "--reward", "0.50")
    row = PlatformStudy.objects.get(experiment=mturk_exp)
    assert row.state == "requested" and row.remote_id == "", str(err.value)
    assert "may or may not exist on MTurk sandbox" in str(err.value) and row.request_token in str(err.value)
    assert "\n" not in str(err.value)

    token = row.request_token
    sent_again = dict(row.details["request"])  # exactly the first request, its token included
    if second == "made-now":
        turk.sandbox.add_response("create_hit", hit_response(mturk_exp, token), sent_again)
    elif second == "named-in-refusal":
        turk.sandbox.add_client_error("create_hit", "RequestError",
                                      f"There is already a HIT which exists with this unique request token. "
                                      f"HITId: {HIT_ID}", expected_params=sent_again,
                                      modeled_fields={"Message": "dup",
                                                      "TurkErrorCode": "AWS.MechanicalTurk.HitAlreadyExists"})
        turk.sandbox.add_response("get_hit", hit_response(mturk_exp, token), {"HITId": HIT_ID})
    else:
        turk.sandbox.add_client_error("create_hit", "RequestError",
                                      f'The idempotency token "{token}" has already been processed.',
                                      expected_params=sent_again)
        other = hit_response(mturk_exp, "someothertoken", hit_id=OTHER_HIT)["HIT"]
        turk.sandbox.add_response("list_hits", {"HITs": [other], "NextToken": "n2", "NumResults": 1},
                                  {"MaxResults": 100})
        turk.sandbox.add_response("list_hits", {"HITs": [hit_response(mturk_exp, token)["HIT"]],
                                                "NumResults": 1}, {"MaxResults": 100, "NextToken": "n2"})
    # other options this time: the pending request is settled with its own parameters, not these
    out = run("create-hit", mturk_exp.slug, "--reward", "0.75", "--assignments", "2")
    turk.done()

    row = PlatformStudy.objects.get(experiment=mturk_exp)  # still exactly one row
    assert (row.state, row.remote_id, row.request_token) == ("created", HIT_ID, token)
    assert turk.sent.count("CreateHIT") == 1  # the timed-out attempt never reached the stub
    assert "settling it first" in out
    assert ("found by its token" in out) == (second != "made-now")


@pytest.mark.parametrize("code,message", [
    ("RequestError", "This Requester has insufficient funds in their account to complete this transaction."),
    ("UnrecognizedClientException", "The security token included in the request is invalid."),
])
def test_api_error_is_one_line_and_leaves_the_request_failed(turk, mturk_exp, code, message):
    turk.sandbox.add_client_error("create_hit", code, message,
                                  expected_params=expected_create(mturk_exp, Capture(), Capture()))
    with pytest.raises(CommandError) as err:
        run("create-hit", mturk_exp.slug, "--reward", "0.50")
    text = str(err.value)
    assert text.startswith(f"MTurk: {message} ({code})") and "\n" not in text
    assert "no HIT was made" in text
    row = PlatformStudy.objects.get(experiment=mturk_exp)
    assert (row.state, row.remote_id) == ("failed", "") and message in row.error

    # a failed request is over: the next create is a new request with a new token
    token = Capture()
    turk.sandbox.add_response("create_hit", hit_response(mturk_exp, "x"),
                              expected_create(mturk_exp, Capture(), token))
    run("create-hit", mturk_exp.slug, "--reward", "0.50")
    turk.done()
    assert token.value != row.request_token
    assert list(PlatformStudy.objects.values_list("state", flat=True)) == ["failed", "created"]


def test_missing_credentials_fail_the_request_before_anything_is_sent(turk, mturk_exp):
    turk.fail_next("CreateHIT", NoCredentialsError())
    with pytest.raises(CommandError, match=r"^MTurk: no AWS credentials found .*\(NoCredentialsError\); "
                                           r"nothing was sent"):
        run("create-hit", mturk_exp.slug, "--reward", "0.50")
    turk.done()
    assert PlatformStudy.objects.get(experiment=mturk_exp).state == "failed"


def test_create_hit_refused_for_a_study_not_on_mturk_calls_nothing(turk, experiment_factory, site):
    exp = experiment_factory(platform="open")
    with pytest.raises(CommandError, match="not Amazon MTurk"):
        run("create-hit", exp.slug, "--reward", "0.50")
    draft = experiment_factory(platform="mturk", status="draft")
    with pytest.raises(CommandError, match="is draft, not live"):
        run("create-hit", draft.slug, "--reward", "0.50")
    turk.done()
    assert turk.calls == [] and turk.sent == []
    assert not PlatformStudy.objects.exists()


@pytest.mark.parametrize("args,problem", [
    (["--reward", "0.50"], "no study URL: set SITE_URL"),
    (["--reward", "0.50", "--url", "http://lab.example.org/p/x/"], "must start with https://"),
    (["--reward=-1", "--url", SITE + "/p/x/"], "reward must be more than $0.00"),
    (["--reward", "0.505", "--url", SITE + "/p/x/"], "reward must be whole cents"),
])
def test_create_hit_refusals_before_any_client(turk, experiment_factory, settings, args, problem):
    settings.SITE_URL = ""
    exp = experiment_factory(platform="mturk")
    with pytest.raises(CommandError) as err:
        run("create-hit", exp.slug, *args)
    assert problem in str(err.value)
    turk.done()
    assert turk.calls == [] and turk.sent == []


# --- list and review ----------------------------------------------------------------------------------


def test_list_shows_balance_and_the_hits(turk, mturk_exp):
    recorded_hit(mturk_exp)
    turk.sandbox.add_response("get_account_balance", {"AvailableBalance": "10000.00"}, {})
    turk.sandbox.add_response("get_hit", hit_response(mturk_exp), {"HITId": HIT_ID})
    out = run("list", mturk_exp.slug)
    turk.done()
    assert "balance: $10000.00 available" in out
    line = next(ln for ln in out.splitlines() if ln.startswith(HIT_ID))
    assert "created" in line and "Assignable" in line


def test_review_proposes_approve_reject_and_manual(turk, mturk_exp):
    recorded_hit(mturk_exp)
    mturk_worker(mturk_exp, "WGOOD", "AGOOD")
    mturk_worker(mturk_exp, "WBAD", "ABAD", sentinel_right=False)
    mturk_worker(mturk_exp, "WGONE", "AGONE", state="active")
    rows = [("AGOOD", "WGOOD", "Submitted"), ("ABAD", "WBAD", "Submitted"), ("ANONE", "WNONE", "Submitted"),
            ("AGONE", "WGONE", "Submitted")]
    stub_listing(turk.sandbox, rows)
    out = run("review", mturk_exp.slug, "--json")
    proposals = {p["submission_id"]: p for p in json.loads(out)}
    assert proposals["AGOOD"]["action"] == "approve" and proposals["AGOOD"]["reasons"] == []
    assert proposals["ABAD"]["action"] == "reject"
    assert any("sentinel accuracy 0.00" in r for r in proposals["ABAD"]["reasons"])
    assert proposals["ANONE"]["action"] == "manual"
    assert proposals["AGONE"]["action"] == "reject" and "not completed" in proposals["AGONE"]["reasons"][0]

    stub_listing(turk.sandbox, rows)
    table = run("review", mturk_exp.slug)
    turk.done()
    bad = next(ln for ln in table.splitlines() if ln.startswith("ABAD"))
    assert "WBAD" in bad and "reject" in bad and "sentinel accuracy" in bad
    assert "to decide: 1 approve, 2 reject, 1 manual" in table


# --- approve / reject ------------------------------------------------------------------------------------


def test_approve_twice_sends_once(turk, mturk_exp):
    recorded_hit(mturk_exp)
    stub_get_assignment(turk.sandbox, "A1", "W1")
    turk.sandbox.add_response("approve_assignment", {}, {"AssignmentId": "A1"})
    first = run("approve", mturk_exp.slug, "A1")
    second = run("approve", mturk_exp.slug, "A1")  # nothing stubbed: a call would fail the test
    turk.done()
    assert "A1 W1: sent: approved" in first
    assert "A1 W1: already: already approved (recorded here" in second
    assert turk.sent == ["GetAssignment", "ApproveAssignment"]
    d = Decision.objects.get(submission_id="A1")
    assert (d.action, d.state, d.worker_id) == ("approve", "done", "W1")


def test_approve_skips_what_mturk_already_decided_and_refuses_other_hits(turk, mturk_exp):
    recorded_hit(mturk_exp)
    stub_get_assignment(turk.sandbox, "A2", "W2", status="Approved")
    stub_get_assignment(turk.sandbox, "A3", "W3", hit_id=OTHER_HIT)
    with pytest.raises(CommandError, match=r"^1 of 2 not done \(A3: assignment A3 belongs to HIT"):
        run("approve", mturk_exp.slug, "A2", "A3")
    turk.done()
    assert "ApproveAssignment" not in turk.sent
    assert not Decision.objects.exists()


def test_approve_all_proposed_approves_only_the_good(turk, mturk_exp):
    recorded_hit(mturk_exp)
    mturk_worker(mturk_exp, "WGOOD", "AGOOD")
    mturk_worker(mturk_exp, "WBAD", "ABAD", sentinel_right=False)
    stub_listing(turk.sandbox, [("AGOOD", "WGOOD", "Submitted"), ("ABAD", "WBAD", "Submitted")])
    stub_get_assignment(turk.sandbox, "AGOOD", "WGOOD")
    turk.sandbox.add_response("approve_assignment", {}, {"AssignmentId": "AGOOD"})
    run("approve", mturk_exp.slug, "--all-proposed")
    turk.done()
    assert list(Decision.objects.values_list("submission_id", "action", "state")) == [
        ("AGOOD", "approve", "done")]


def test_reject_needs_a_reason(turk, mturk_exp):
    recorded_hit(mturk_exp)
    for extra in ([], ["--reason", "   "]):
        with pytest.raises(CommandError, match="a rejection needs --reason"):
            run("reject", mturk_exp.slug, "A1", *extra)
    with pytest.raises(service.MTurkError, match="a rejection needs a reason"):
        service.reject(mturk_exp, turk.sandbox.client, ["A1"], "")
    turk.done()
    assert turk.sent == [] and not Decision.objects.exists()


def test_reject_all_proposed_sends_the_qc_reasons(turk, mturk_exp):
    recorded_hit(mturk_exp)
    mturk_worker(mturk_exp, "WGOOD", "AGOOD")
    mturk_worker(mturk_exp, "WBAD", "ABAD", sentinel_right=False)
    stub_listing(turk.sandbox, [("AGOOD", "WGOOD", "Submitted"), ("ABAD", "WBAD", "Submitted")])
    stub_get_assignment(turk.sandbox, "ABAD", "WBAD")
    feedback = Capture()
    turk.sandbox.add_response("reject_assignment", {},
                              {"AssignmentId": "ABAD", "RequesterFeedback": feedback})
    run("reject", mturk_exp.slug, "--all-proposed")
    turk.done()
    assert feedback.value.startswith("Quality control: ")
    assert "sentinel accuracy 0.00 < 0.75" in feedback.value
    d = Decision.objects.get()
    assert (d.submission_id, d.action, d.state, d.reason) == ("ABAD", "reject", "done", feedback.value)


# --- bonus -----------------------------------------------------------------------------------------------


def test_bonus_sends_the_token_and_refuses_a_second(turk, mturk_exp):
    recorded_hit(mturk_exp)
    token = Capture()
    stub_get_assignment(turk.sandbox, "A1", "W1")
    turk.sandbox.add_response("send_bonus", {}, {
        "WorkerId": "W1", "BonusAmount": "0.25", "AssignmentId": "A1", "Reason": "Thanks for careful work",
        "UniqueRequestToken": token})
    out = run("bonus", mturk_exp.slug, "A1", "--amount", "0.25", "--reason", "Thanks for careful work")
    assert "bonus $0.25 paid to W1" in out
    d = Decision.objects.get(action="bonus")
    assert (d.state, d.request_token, str(d.amount)) == ("done", token.value, "0.25")

    with pytest.raises(CommandError, match=r"a bonus of \$0.25 was paid for A1"):
        run("bonus", mturk_exp.slug, "A1", "--amount", "0.25", "--reason", "again")
    for amount, problem in [("-0.25", "more than"), ("0", "more than"), ("150", "at most"), ("abc", "USD")]:
        with pytest.raises(CommandError, match=problem):
            run("bonus", mturk_exp.slug, "A1", f"--amount={amount}", "--reason", "x", "--again")
    turk.done()
    assert turk.sent == ["GetAssignment", "SendBonus"]

    again = Capture()
    stub_get_assignment(turk.sandbox, "A1", "W1")
    turk.sandbox.add_response("send_bonus", {}, {
        "WorkerId": "W1", "BonusAmount": "1.00", "AssignmentId": "A1", "Reason": "More",
        "UniqueRequestToken": again})
    run("bonus", mturk_exp.slug, "A1", "--amount", "1", "--reason", "More", "--again")
    turk.done()
    assert again.value != token.value and Decision.objects.filter(action="bonus", state="done").count() == 2


def test_bonus_retry_after_no_answer_reuses_the_token(turk, mturk_exp):
    recorded_hit(mturk_exp)
    stub_get_assignment(turk.sandbox, "A1", "W1")
    turk.fail_next("SendBonus", ReadTimeoutError(endpoint_url=service.SANDBOX_ENDPOINT))
    with pytest.raises(CommandError, match="may or may not have been paid"):
        run("bonus", mturk_exp.slug, "A1", "--amount", "0.50", "--reason", "Thanks")
    d = Decision.objects.get(action="bonus")
    assert d.state == "sent"

    with pytest.raises(CommandError, match=r"run the same bonus \(\$0.50\) again"):
        run("bonus", mturk_exp.slug, "A1", "--amount", "0.60", "--reason", "Thanks")
    stub_get_assignment(turk.sandbox, "A1", "W1")
    turk.sandbox.add_client_error(
        "send_bonus", "RequestError",
        f'The idempotency token "{d.request_token}" has already been processed.',
        expected_params={"WorkerId": "W1", "BonusAmount": "0.50", "AssignmentId": "A1", "Reason": "Thanks",
                         "UniqueRequestToken": d.request_token})
    out = run("bonus", mturk_exp.slug, "A1", "--amount", "0.50", "--reason", "Thanks")
    turk.done()
    assert "was paid" in out
    d.refresh_from_db()
    assert d.state == "done" and Decision.objects.filter(action="bonus").count() == 1


# --- the Recruiting page ---------------------------------------------------------------------------------


def test_recruiting_page_drives_mturk(turk, mturk_exp, client, django_user_model):
    """The study's Recruiting page: a sandbox HIT, the review with proposals, approve-proposed, a
    rejection with the researcher's reason, and a live create refused by MTurk shown as one line."""
    owner = django_user_model.objects.get(username="crowd-owner")
    client.force_login(owner)
    page = f"/lab/e/{mturk_exp.slug}/recruit/"
    assert b"Sandbox (no money)" in client.get(page).content and turk.sent == []  # a visit asks nothing
    question, token = Capture(), Capture()
    turk.sandbox.add_response("create_hit", hit_response(mturk_exp, "x"),
                              expected_create(mturk_exp, question, token))
    form = {"reward": "0.50", "assignments": "", "frame_height": "0", "lifetime_hours": "72"}
    r = client.post(page + "create/", form, follow=True)
    row = PlatformStudy.objects.get(experiment=mturk_exp)
    assert (row.remote_id, row.state, row.sandbox, row.created_by) == (HIT_ID, "created", True, owner)
    assert any(HIT_ID in str(m) for m in r.context["messages"])

    mturk_worker(mturk_exp, "WGOOD", "AGOOD")
    mturk_worker(mturk_exp, "WBAD", "ABAD", sentinel_right=False)
    rows = [("AGOOD", "WGOOD", "Submitted"), ("ABAD", "WBAD", "Submitted")]
    turk.sandbox.add_response("get_account_balance", {"AvailableBalance": "10000.00"}, {})
    turk.sandbox.add_response("get_hit", hit_response(mturk_exp), {"HITId": HIT_ID})
    stub_listing(turk.sandbox, rows)
    r = client.get(page + "?review=1")
    assert {p.submission.submission_id: p.action for p in r.context["proposals"]} == {
        "AGOOD": "approve", "ABAD": "reject"}
    assert b"sentinel accuracy 0.00" in r.content and b"Balance: $10000.00" in r.content

    stub_listing(turk.sandbox, rows)
    stub_get_assignment(turk.sandbox, "AGOOD", "WGOOD")
    turk.sandbox.add_response("approve_assignment", {}, {"AssignmentId": "AGOOD"})
    client.post(page + "approve-proposed/")
    stub_get_assignment(turk.sandbox, "ABAD", "WBAD")
    turk.sandbox.add_response("reject_assignment", {}, {"AssignmentId": "ABAD",
                                                        "RequesterFeedback": "Wrong answers on checks"})
    client.post(page + "decide/", {"verdict": "reject", "submission": ["ABAD"],
                                   "reason": "Wrong answers on checks"})
    assert set(Decision.objects.values_list("submission_id", "action", "state", "decided_by")) == {
        ("AGOOD", "approve", "done", owner.pk), ("ABAD", "reject", "done", owner.pk)}

    turk.live.add_client_error("create_hit", service_error_code="RequestError", http_status_code=400,
                               service_message="You do not have enough funds to create this HIT.")
    r = client.post(page + "create/", {**form, "live": "1"}, follow=True)
    said = [str(m) for m in r.context["messages"]]
    assert said[:2] == ["AGOOD (WGOOD): approve sent: approved", "ABAD (WBAD): reject sent: rejected"]
    err = said[-1]
    assert err.startswith("MTurk: You do not have enough funds") and "\n" not in err
    assert PlatformStudy.objects.get(experiment=mturk_exp, sandbox=False).state == "failed"
    assert r.request["QUERY_STRING"] == "live=1" and b"LIVE: real workers, real money." in r.content
    turk.done()
    assert (True, None) in turk.calls
