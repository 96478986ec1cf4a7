"""MTurk from the lab: HITs for a study, their submissions, and the approvals, rejections and bonuses sent.

Every function takes the experiment, a boto3 ``mturk`` client (``client()``; its endpoint decides sandbox or
live) and, where something is sent, the acting user; they return plain data and raise one exception type,
``MTurkError``, whose text is one line. Nothing here holds credentials: boto3 finds them (environment,
``--profile``, its default chain).

What is sent is recorded first (``PlatformStudy`` / ``Decision`` rows with the idempotency token), then
completed, so an answer lost on the way (timeout, dropped connection) leaves a row that says so, and a retry
resends the same token: MTurk refuses a repeated token for 24 hours, which this module reads as "done
already" (the HIT is then looked up by its ``RequesterAnnotation``, which carries the token). Call them
outside a transaction (as Django runs views and commands by default): a record rolled back with an error
would forget what may exist on MTurk.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from xml.sax.saxutils import escape

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webapp.experiments.models import Experiment
from webapp.lab.analysis import progress
from webapp.recruit.models import Decision, PlatformStudy
from webapp.recruit.review import Proposal, Submission, propose

SANDBOX_ENDPOINT = "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
LIVE_ENDPOINT = "https://mturk-requester.us-east-1.amazonaws.com"
REGION = "us-east-1"
QUESTION_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
MAX_REWARD = Decimal("100.00")  # per assignment, a typo guard (100 × 0.50 is not a reward)
MAX_BONUS = Decimal("100.00")
MAX_FEEDBACK = 1024  # MTurk's limit on RequesterFeedback
TOKEN_WINDOW = timedelta(hours=23)  # MTurk remembers a UniqueRequestToken 24 h; keep a margin
CENT = Decimal("0.01")
_HIT_ID = re.compile(r"\b[A-Z0-9]{30}\b")  # MTurk's HIT ids in its messages


class MTurkError(Exception):
    """One line: ``MTurk: <their message> (<their code>)`` for what MTurk or boto3 answered, plus what exists
    where when that matters; ``code`` None: refused here, nothing was sent."""

    def __init__(self, message: str, code: str | None = None, where: str = ""):
        self.message = " ".join(str(message).split())
        self.code = code
        self.where = " ".join(where.split())
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"MTurk: {self.message} ({self.code})" if self.code else self.message
        return f"{text}; {self.where}" if self.where else text


def _translate(exc: Exception, where: str = "") -> MTurkError:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or "ClientError"
        turk = exc.response.get("TurkErrorCode") or err.get("TurkErrorCode")
        return MTurkError(err.get("Message") or str(exc), f"{code}: {turk}" if turk else code, where)
    if isinstance(exc, NoCredentialsError):
        return MTurkError("no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                          "pass a profile)", "NoCredentialsError", where)
    return MTurkError(str(exc), type(exc).__name__, where)


def _no_answer(exc: Exception) -> bool:
    """True when the request may have reached MTurk but no answer came back (its outcome is unknown)."""
    return isinstance(exc, BotoConnectionError | HTTPClientError)


# --- client and the HIT's content ----------------------------------------------------------------------


def client(live: bool = False, profile: str | None = None):
    """A boto3 ``mturk`` client on the sandbox (default) or, with ``live``, the real marketplace. Credentials
    come from ``profile`` if named, else boto3's default chain (environment, shared files, roles)."""
    try:
        session = boto3.Session(profile_name=profile) if profile else boto3.Session()
        config = Config(connect_timeout=10, read_timeout=60, retries={"mode": "standard", "max_attempts": 3})
        return session.client("mturk", region_name=REGION, config=config,
                              endpoint_url=LIVE_ENDPOINT if live else SANDBOX_ENDPOINT)
    except ProfileNotFound as exc:
        raise _translate(exc) from exc


def is_live(mturk) -> bool:
    """Whether ``mturk`` (a client) spends real money."""
    return mturk.meta.endpoint_url.rstrip("/") == LIVE_ENDPOINT


def mode_line(live: bool) -> str:
    return "LIVE (real money)" if live else "SANDBOX (test marketplace, no money)"


def preview_url(group_id: str, live: bool) -> str:
    """Where a worker sees the HIT's group."""
    host = "https://worker.mturk.com" if live else "https://workersandbox.mturk.com"
    return f"{host}/projects/{group_id}/tasks"


def external_question_xml(url: str, frame_height: int = 0) -> str:
    """The ExternalQuestion document for ``url`` (XML-escaped) in a frame ``frame_height`` pixels high
    (0: MTurk sizes the frame to the window)."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<ExternalQuestion xmlns="{QUESTION_NS}">'
            f"<ExternalURL>{escape(url)}</ExternalURL><FrameHeight>{int(frame_height)}</FrameHeight>"
            "</ExternalQuestion>")


def study_url(exp: Experiment, url: str | None = None) -> str:
    """The study link MTurk frames: ``url`` if given, else ``SITE_URL/p/<slug>/``."""
    if not url:
        base = getattr(settings, "SITE_URL", "")
        if not base:
            raise MTurkError("no study URL: set SITE_URL (the site's public https address) or pass --url")
        url = f"{base.rstrip('/')}/p/{exp.slug}/"
    if not url.startswith("https://"):
        raise MTurkError(f"the study URL must start with https:// (MTurk frames only https pages): {url}")
    return url


def planned_assignments(exp: Experiment) -> int:
    """Assignments needed to reach the study's judgment target: the judgments still missing (the target
    minus those collected, each trial capped at its own target, as ``lab.analysis.progress`` counts them)
    divided by the trials of one assignment, rounded up; at least 1. Assignments still open on earlier HITs
    are not subtracted (MTurk is not asked here)."""
    p = progress(exp)
    remaining = max(p["target_judgments"] - p["collected_judgments"], 0)
    return max(1, math.ceil(remaining / max(exp.trials_per_assignment, 1)))


@dataclass(frozen=True)
class Cost:
    """What a HIT costs at most: rewards plus MTurk's fee (20 %, 40 % with 10 or more assignments; at least
    $0.01 per assignment). Bonuses pay the same fee on top."""

    reward: Decimal
    assignments: int
    rewards: Decimal
    fee_rate: Decimal
    fee: Decimal
    total: Decimal

    def line(self) -> str:
        return (f"cost estimate: {self.assignments} × ${self.reward} = ${self.rewards} + MTurk fee "
                f"{self.fee_rate:.0%} ${self.fee} = ${self.total}")


def cost_estimate(reward: Decimal | str, assignments: int) -> Cost:
    """The most a HIT of ``assignments`` at ``reward`` each costs (``Cost``)."""
    r = _money(reward, "reward", MAX_REWARD)
    rate = Decimal("0.40") if assignments >= 10 else Decimal("0.20")
    per = max(CENT, (r * rate).quantize(CENT, ROUND_HALF_UP))
    rewards, fee = r * assignments, per * assignments
    return Cost(r, assignments, rewards, rate, fee, rewards + fee)


def _money(value: Decimal | str | float, what: str, cap: Decimal) -> Decimal:
    try:
        d = Decimal(str(value).strip().lstrip("$"))
    except InvalidOperation:
        raise MTurkError(f"{what} must be an amount in USD such as 0.50, not {value!r}") from None
    if not d.is_finite() or d <= 0 or d > cap:
        raise MTurkError(f"{what} must be more than $0.00 and at most ${cap}, not {value}")
    if d != d.quantize(CENT):
        raise MTurkError(f"{what} must be whole cents, not {value}")
    return d.quantize(CENT)


# --- HITs ----------------------------------------------------------------------------------------------


@dataclass
class HitResult:
    """What ``create_hit`` did: the HIT recorded in ``study`` (``resumed``: a pending request was completed
    instead of a new one; ``found``: MTurk had made the HIT already, it was looked up, not made again)."""

    study: PlatformStudy
    hit_id: str
    hit_type_id: str
    hit_group_id: str
    assignments: int
    reward: str
    live: bool
    resumed: bool = False
    found: bool = False

    @property
    def preview(self) -> str:
        return preview_url(self.hit_group_id, self.live) if self.hit_group_id else ""


def _annotation(exp: Experiment, token: str) -> str:
    return f"perceptual-lab {exp.slug} {token}"[:255]


def check_study(exp: Experiment, *, hit: bool = False) -> None:
    """Refuse (``MTurkError``, nothing sent) a study that does not recruit on MTurk; with ``hit``, also one
    that is not live (its workers would be turned away)."""
    if exp.platform != "mturk":
        raise MTurkError(f"study {exp.slug!r} recruits on {exp.get_platform_display()}, not Amazon MTurk: "
                         "nothing was sent (set its platform to mturk for HITs)")
    if hit and exp.status != "live":
        raise MTurkError(f"study {exp.slug!r} is {exp.status}, not live: workers would be turned away; set "
                         "it live first (nothing was sent)")


def _hits(exp: Experiment, live: bool, states: Iterable[str] = ("created",)):
    return PlatformStudy.objects.filter(experiment=exp, platform="mturk", sandbox=not live, state__in=states)


def pending_hit(exp: Experiment, mturk) -> PlatformStudy | None:
    """The study's HIT request still without an answer on the client's marketplace (``create_hit`` resends
    it, with its own parameters, before anything new), or None."""
    return _hits(exp, is_live(mturk), ["requested"]).order_by("id").first()


def create_hit(exp: Experiment, mturk, *, url: str | None = None, reward: Decimal | str,
               assignments: int | None = None, frame_height: int = 0, lifetime_hours: float = 72,
               title: str | None = None, description: str | None = None,
               keywords: str = "image, comparison, perception, quality, research",
               auto_approve_hours: float = 72, user=None, live: bool | None = None) -> HitResult:
    """Make one HIT for ``exp`` whose ExternalQuestion frames the study link; never two for one request.

    A ``PlatformStudy`` row (state ``requested``, with the UniqueRequestToken) is written before the call,
    then marked ``created`` (HITId, HITTypeId) or ``failed`` (MTurk's answer; nothing exists there). With no
    answer (timeout, dropped connection) it stays ``requested`` and ``MTurkError`` says so; the next
    ``create_hit`` for the study on the same marketplace resends that request with its token instead of
    making a new one (its own arguments are then not used), and finds the HIT if MTurk had made it.
    ``assignments``: default ``planned_assignments(exp)``. ``live``: if given, must match the client.
    """
    check_study(exp, hit=True)
    client_live = is_live(mturk)
    if live is not None and live != client_live:
        raise MTurkError(f"asked for a {'live' if live else 'sandbox'} HIT with a {mode_line(client_live)} "
                         "client: nothing was sent")
    r = _money(reward, "reward", MAX_REWARD)
    n = planned_assignments(exp) if assignments is None else int(assignments)
    if n < 1:
        raise MTurkError(f"assignments must be at least 1, not {n}")
    if frame_height < 0:
        raise MTurkError(f"frame height must be 0 (the whole window) or more pixels, not {frame_height}")
    if not 30 <= lifetime_hours * 3600 <= 365 * 24 * 3600:
        raise MTurkError(f"lifetime must be between 30 s and 365 days, not {lifetime_hours} h")
    if not 0 <= auto_approve_hours <= 30 * 24:
        raise MTurkError(f"auto-approval delay must be between 0 and 30 days, not {auto_approve_hours} h")
    link = study_url(exp, url)

    with transaction.atomic():
        # one pending request per study and marketplace: a second create (a retry, another window) reuses it
        Experiment.objects.select_for_update().filter(pk=exp.pk).first()
        row = pending_hit(exp, mturk)
        resumed = row is not None
        if row is None:
            token = uuid.uuid4().hex
            request = {
                "MaxAssignments": n,
                "AutoApprovalDelayInSeconds": int(auto_approve_hours * 3600),
                "LifetimeInSeconds": int(lifetime_hours * 3600),
                "AssignmentDurationInSeconds": int(exp.assignment_timeout_minutes) * 60,
                "Reward": str(r),
                "Title": title or exp.title,
                "Keywords": keywords,
                "Description": description or exp.question,
                "Question": external_question_xml(link, frame_height),
                "RequesterAnnotation": _annotation(exp, token),
                "UniqueRequestToken": token,
            }
            row = PlatformStudy.objects.create(
                experiment=exp, platform="mturk", sandbox=not client_live, request_token=token,
                state="requested", created_by=user if getattr(user, "pk", None) else None,
                details={"request": request, "url": link, "frame_height": frame_height})
    request = row.details["request"]
    token = row.request_token
    where = (f"a HIT may or may not exist on MTurk {'live' if client_live else 'sandbox'}; kept here as "
             f"requested (token {token}): run create-hit for {exp.slug} again within 24 h to settle it, "
             "it resends the same token and never makes a second HIT")

    hit = None
    if resumed and timezone.now() - row.created > TOKEN_WINDOW:
        hit = _find_hit(mturk, token, where)  # MTurk forgot the token: a resend alone could make a second HIT
    if hit is None:
        try:
            hit = mturk.create_hit(**request)["HIT"]
            found = False
        except ClientError as exc:
            if not _duplicate(exc):
                _fail(row, exc)
                raise _translate(exc, f"no HIT was made; recorded here as failed (token {token})") from exc
            hit = _find_hit(mturk, token, where, exc)
            if hit is None:
                raise _translate(exc, f"MTurk has a HIT for token {token} but it was not found by its "
                                      "annotation; kept here as requested") from exc
            found = True
        except BotoCoreError as exc:
            if _no_answer(exc):
                raise _translate(exc, where) from exc
            _fail(row, exc)  # refused before sending (credentials, parameters): nothing exists there
            raise _translate(exc, f"nothing was sent, no HIT exists; recorded here as failed (token {token})"
                             ) from exc
    else:
        found = True
    row.remote_id = hit["HITId"]
    row.state = "created"
    row.error = ""
    row.details = {**row.details, "hit_type_id": hit.get("HITTypeId", ""),
                   "hit_group_id": hit.get("HITGroupId", ""), "found_by_token": found}
    row.save(update_fields=["remote_id", "state", "error", "details"])
    return HitResult(row, hit["HITId"], hit.get("HITTypeId", ""), hit.get("HITGroupId", ""),
                     int(request["MaxAssignments"]), request["Reward"], client_live, resumed, found)


def _fail(row: PlatformStudy, exc: Exception) -> None:
    row.state = "failed"
    row.error = str(_translate(exc))
    row.save(update_fields=["state", "error"])


def _duplicate(exc: ClientError) -> bool:
    """MTurk's answer to a UniqueRequestToken it has seen (the earlier request went through)."""
    turk = str(exc.response.get("TurkErrorCode") or exc.response.get("Error", {}).get("TurkErrorCode") or "")
    msg = str(exc.response.get("Error", {}).get("Message", "")).lower()
    return ("AlreadyExists" in turk or "already been processed" in msg
            or ("already" in msg and ("unique request token" in msg or "idempotency" in msg)))


def _pages(call, key: str, **kwargs) -> Iterator[dict]:
    token = None
    while True:
        page = call(**kwargs, **({"NextToken": token} if token else {}))
        yield from page.get(key, [])
        token = page.get("NextToken")
        if not token or not page.get(key):
            return


def _find_hit(mturk, token: str, where: str, exc: ClientError | None = None) -> dict | None:
    """The HIT made with ``token``: the one MTurk's refusal names if it carries the token, else the one whose
    RequesterAnnotation does (ListHITs, every page)."""
    mine = lambda h: token in (h.get("RequesterAnnotation") or "").split()  # noqa: E731
    try:
        msg = exc.response.get("Error", {}).get("Message", "") if exc is not None else ""
        for hit_id in _HIT_ID.findall(msg):
            hit = mturk.get_hit(HITId=hit_id)["HIT"]
            if mine(hit):
                return hit
        return next((h for h in _pages(mturk.list_hits, "HITs", MaxResults=100) if mine(h)), None)
    except (ClientError, BotoCoreError) as err:
        raise _translate(err, where) from err


@dataclass
class HitInfo:
    """One HIT of the study as recorded here and, for created ones, as MTurk reports it now."""

    hit_id: str
    state: str  # ours: requested / created / failed
    status: str  # MTurk's HITStatus, or what is known
    max_assignments: int | None
    available: int | None
    pending: int | None
    completed: int | None
    reward: str
    expiration: str
    created: str
    request_token: str
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def list_hits(exp: Experiment, mturk) -> list[HitInfo]:
    """Every HIT request of the study on the client's marketplace, oldest first, with MTurk's live counts
    (GetHIT) for the created ones."""
    check_study(exp)
    out = []
    for row in _hits(exp, is_live(mturk), ["requested", "created", "failed"]).order_by("id"):
        req = row.details.get("request", {})
        info = HitInfo(row.remote_id, row.state, row.get_state_display(), req.get("MaxAssignments"), None,
                       None, None, req.get("Reward", ""), "", row.created.isoformat(timespec="seconds"),
                       row.request_token, row.error)
        if row.state == "created":
            try:
                hit = mturk.get_hit(HITId=row.remote_id)["HIT"]
            except ClientError as exc:
                info.status, info.error = "not found on MTurk", str(_translate(exc))
            except BotoCoreError as exc:
                raise _translate(exc) from exc
            else:
                info.status = hit.get("HITStatus", "")
                info.max_assignments = hit.get("MaxAssignments")
                info.available = hit.get("NumberOfAssignmentsAvailable")
                info.pending = hit.get("NumberOfAssignmentsPending")
                info.completed = hit.get("NumberOfAssignmentsCompleted")
                info.reward = hit.get("Reward", info.reward)
                exp_at = hit.get("Expiration")
                info.expiration = exp_at.isoformat(timespec="seconds") if hasattr(exp_at, "isoformat") else ""
        out.append(info)
    return out


@dataclass(frozen=True)
class Balance:
    available: str
    on_hold: str


def balance(mturk) -> Balance:
    """The requester account's balance (GetAccountBalance; the sandbox always shows $10,000.00)."""
    try:
        r = mturk.get_account_balance()
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc) from exc
    return Balance(r.get("AvailableBalance", ""), r.get("OnHoldBalance", ""))


# --- submissions and review ------------------------------------------------------------------------------


def submissions(exp: Experiment, mturk) -> list[Submission]:
    """Every assignment submitted to the study's HITs on the client's marketplace (ListAssignmentsForHIT,
    Submitted, Approved and Rejected, every page)."""
    check_study(exp)
    out = []
    try:
        for hit_id in _hits(exp, is_live(mturk)).order_by("id").values_list("remote_id", flat=True):
            for a in _pages(mturk.list_assignments_for_hit, "Assignments", HITId=hit_id, MaxResults=100,
                            AssignmentStatuses=["Submitted", "Approved", "Rejected"]):
                out.append(Submission(a["AssignmentId"], a["WorkerId"], a["AssignmentStatus"]))
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc) from exc
    return out


def review(exp: Experiment, mturk) -> list[Proposal]:
    """A proposal (approve / reject with QC's reasons / manual) for every submission (``review.propose``)."""
    return propose(exp, "mturk", submissions(exp, mturk))


# --- decisions -------------------------------------------------------------------------------------------


@dataclass
class DecisionResult:
    """What happened to one assignment: ``outcome`` is ``sent`` (done now), ``already`` (done before, here or
    on MTurk: nothing sent), ``refused`` (not ours, nothing sent) or ``failed`` (MTurk said no)."""

    assignment_id: str
    worker_id: str
    action: str
    outcome: str
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


_PAST = {"approve": "approved", "reject": "rejected", "bonus": "bonus paid"}


def _feedback(text: str, what: str) -> str:
    text = " ".join((text or "").split())
    if len(text) > MAX_FEEDBACK:
        raise MTurkError(f"{what} is {len(text)} characters; MTurk takes at most {MAX_FEEDBACK}")
    return text


def _get_assignment(exp: Experiment, mturk, aid: str) -> tuple[dict | None, str, str]:
    """``(assignment, "", "")`` for MTurk's assignment ``aid`` of one of the study's HITs, else
    ``(None, outcome, why)``: ``failed`` (MTurk's answer) or ``refused`` (another HIT's assignment)."""
    try:
        got = mturk.get_assignment(AssignmentId=aid)
    except ClientError as exc:
        return None, "failed", str(_translate(exc))
    a = got["Assignment"]
    hits = set(_hits(exp, is_live(mturk)).values_list("remote_id", flat=True))
    if a.get("HITId") not in hits:
        return None, "refused", (f"assignment {aid} belongs to HIT {a.get('HITId')}, not to a HIT of study "
                                 f"{exp.slug}: nothing was sent")
    return a, "", ""


def _verdict(exp: Experiment, mturk, aid: str, action: str, feedback: str, user) -> DecisionResult:
    done = Decision.objects.filter(platform="mturk", submission_id=aid, action__in=["approve", "reject"],
                                   state="done").first()
    if done:
        return DecisionResult(aid, done.worker_id, action, "already",
                              f"already {_PAST[done.action]} (recorded here {done.created:%Y-%m-%d %H:%M})")
    try:
        a, outcome, why = _get_assignment(exp, mturk, aid)
    except BotoCoreError as exc:
        raise _translate(exc, f"{aid}: nothing was sent") from exc
    if a is None:
        return DecisionResult(aid, "", action, outcome, why)
    worker, status = a.get("WorkerId", ""), a.get("AssignmentStatus", "")
    if status in ("Approved", "Rejected"):
        verb = "approve" if status == "Approved" else "reject"
        # our own earlier send whose answer was lost: MTurk's status settles it
        ours = Decision.objects.filter(platform="mturk", submission_id=aid, action=verb)
        ours.update(state="done", error="")
        return DecisionResult(aid, worker, action, "already", f"already {status.lower()} on MTurk")
    row, _ = Decision.objects.get_or_create(
        platform="mturk", submission_id=aid, action=action,
        defaults={"experiment": exp, "worker_id": worker, "request_token": uuid.uuid4().hex})
    row.state, row.reason, row.error, row.worker_id = "sent", feedback, "", worker
    row.decided_by = user if getattr(user, "pk", None) else None
    row.save()
    try:
        if action == "approve":
            extra = {"RequesterFeedback": feedback} if feedback else {}
            mturk.approve_assignment(AssignmentId=aid, **extra)
        else:
            mturk.reject_assignment(AssignmentId=aid, RequesterFeedback=feedback)
    except ClientError as exc:
        row.state, row.error = "failed", str(_translate(exc))
        row.save(update_fields=["state", "error"])
        return DecisionResult(aid, worker, action, "failed", row.error)
    except BotoCoreError as exc:
        if _no_answer(exc):
            raise _translate(exc, f"{aid}: outcome unknown, recorded here as sent (running it again asks "
                                  "MTurk's status first)") from exc
        row.state, row.error = "failed", str(_translate(exc))
        row.save(update_fields=["state", "error"])
        raise _translate(exc, f"{aid}: nothing was sent") from exc
    row.state = "done"
    row.save(update_fields=["state"])
    return DecisionResult(aid, worker, action, "sent", _PAST[action])


def _decide_all(exp: Experiment, mturk, ids: Iterable[str], action: str, feedback: str | dict[str, str],
                user) -> list[DecisionResult]:
    check_study(exp)
    ids = list(dict.fromkeys(i.strip() for i in ids if i and i.strip()))
    if not ids:
        raise MTurkError(f"no assignment to {action}")
    texts = {i: feedback.get(i, "") if isinstance(feedback, dict) else feedback for i in ids}
    texts = {i: _feedback(t, "feedback" if action == "approve" else "the reason") for i, t in texts.items()}
    if action == "reject" and (empty := [i for i, t in texts.items() if not t]):
        raise MTurkError(f"a rejection needs a reason the worker sees (MTurk's RequesterFeedback); none for "
                         f"{', '.join(empty)}: nothing was sent")
    out: list[DecisionResult] = []
    for aid in ids:
        try:
            out.append(_verdict(exp, mturk, aid, action, texts[aid], user))
        except MTurkError as exc:
            sent = sum(r.outcome == "sent" for r in out)
            exc.where = f"{sent} of {len(ids)} {_PAST[action]} before {aid}; {exc.where}; the rest not sent"
            raise
    return out


def approve(exp: Experiment, mturk, assignment_ids: Iterable[str], user=None,
            feedback: str = "") -> list[DecisionResult]:
    """Approve each assignment (of the study's HITs) once: one already approved or rejected, here or on
    MTurk (GetAssignment), is reported ``already`` and not sent again."""
    return _decide_all(exp, mturk, assignment_ids, "approve", feedback, user)


def reject(exp: Experiment, mturk, assignment_ids: Iterable[str], reason: str | dict[str, str],
           user=None) -> list[DecisionResult]:
    """Reject each assignment once, with ``reason`` shown to the worker (one for all, or per assignment id);
    an empty reason refuses the whole call before anything is sent. Idempotent as ``approve``."""
    return _decide_all(exp, mturk, assignment_ids, "reject", reason, user)


def bonus(exp: Experiment, mturk, assignment_id: str, amount: Decimal | str, reason: str, user=None, *,
          again: bool = False) -> DecisionResult:
    """Pay the worker of ``assignment_id`` a bonus of ``amount`` USD (> 0, at most MAX_BONUS, whole cents).

    A ``Decision`` row with the UniqueRequestToken is written before SendBonus. A bonus whose answer was lost
    stays ``sent`` and the next call for that assignment resends it with the same token (the same amount
    only), so it is never paid twice; a second bonus to an assignment already paid one is refused unless
    ``again``."""
    check_study(exp)
    aid = (assignment_id or "").strip()
    amt = _money(amount, "bonus amount", MAX_BONUS)
    why = _feedback(reason, "the reason")
    if not why:
        raise MTurkError("a bonus needs a reason the worker sees: nothing was sent")
    prior = Decision.objects.filter(platform="mturk", submission_id=aid, action="bonus")
    row = prior.filter(state="sent").order_by("id").first()
    if row is not None and row.amount != amt:
        raise MTurkError(f"a bonus of ${row.amount} to {aid} is recorded as sent with no answer (token "
                         f"{row.request_token}): run the same bonus (${row.amount}) again to settle it first")
    paid = prior.filter(state="done").order_by("id").last()
    if row is None and paid is not None and not again:
        return DecisionResult(aid, paid.worker_id, "bonus", "refused",
                              f"a bonus of ${paid.amount} was paid for {aid} on {paid.created:%Y-%m-%d}; "
                              "pass again to pay another")
    try:
        a, outcome, problem = _get_assignment(exp, mturk, aid)
    except BotoCoreError as exc:
        raise _translate(exc, "nothing was sent") from exc
    if a is None:
        return DecisionResult(aid, "", "bonus", outcome, problem)
    worker = a.get("WorkerId", "")
    if row is None:
        row = Decision.objects.create(
            experiment=exp, platform="mturk", submission_id=aid, worker_id=worker, action="bonus", reason=why,
            amount=amt, request_token=uuid.uuid4().hex, state="sent",
            decided_by=user if getattr(user, "pk", None) else None)
    try:
        mturk.send_bonus(WorkerId=worker, BonusAmount=str(amt), AssignmentId=aid, Reason=row.reason,
                         UniqueRequestToken=row.request_token)
    except ClientError as exc:
        if not _duplicate(exc):
            row.state, row.error = "failed", str(_translate(exc))
            row.save(update_fields=["state", "error"])
            return DecisionResult(aid, worker, "bonus", "failed", f"{row.error}; no bonus was paid")
        row.state, row.error = "done", ""  # the earlier send with this token went through
        row.save(update_fields=["state", "error"])
        return DecisionResult(aid, worker, "bonus", "already",
                              f"the bonus of ${amt} sent earlier with token {row.request_token} was paid")
    except BotoCoreError as exc:
        if _no_answer(exc):
            raise _translate(exc, f"a bonus of ${amt} to worker {worker} may or may not have been paid; "
                                  f"recorded here as sent (token {row.request_token}): run the same bonus "
                                  "again within 24 h to settle it, MTurk never pays a token twice") from exc
        row.state, row.error = "failed", str(_translate(exc))
        row.save(update_fields=["state", "error"])
        raise _translate(exc, "nothing was sent, no bonus was paid") from exc
    row.state, row.error = "done", ""
    row.save(update_fields=["state", "error"])
    return DecisionResult(aid, worker, "bonus", "sent", f"bonus ${amt} paid to {worker}")
