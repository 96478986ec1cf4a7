"""Prolific from the lab: create the study there, publish/pause/stop it with the site, review, pay.

Prolific's REST API as its reference documents it (https://docs.prolific.com/api-reference/; operation ids
in brackets), below ``settings.PROLIFIC_API_URL`` with ``Authorization: Token <PROLIFIC_TOKEN>``:

- ``POST studies/`` [create-study]: a draft with ``external_study_url`` (our link plus
  ``PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}``),
  ``prolific_id_option: "url_parameters"``, ``completion_codes`` (the experiment's code, ``code_type``
  COMPLETED, action MANUALLY_REVIEW: the site's QC proposes, a researcher decides),
  ``total_available_places``, ``reward`` (minor unit of the account's currency), ``estimated_completion_time``
  (minutes), ``filters: []``.
- ``GET studies/`` [get-studies]: Prolific takes no idempotency key, so our request token goes into
  ``internal_name`` and a retry after an unknown outcome looks for it there before creating again.
- ``GET studies/{id}/`` [get-study], ``POST studies/{id}/transition/`` [publish-study] with ``action``
  PUBLISH, START (resume), PAUSE or STOP.
- ``GET studies/{id}/submissions/`` [get-study-submissions], following ``_links.next.href``.
- ``POST submissions/{id}/transition/`` [transition-submission]: APPROVE, or REJECT with a ``message`` of at
  least 100 characters and a ``rejection_category``; Prolific ignores the same request sent twice.
- ``POST submissions/{id}/request-return/`` [request-submission-return] with ``request_return_reasons``.
- ``POST submissions/bonus-payments/`` [create-bonus-payments] with ``study_id`` and ``csv_bonuses``
  (``<participant_id>,<amount>`` lines, amount in the major unit), then ``POST bulk-bonus-payments/{id}/pay/``
  [pay-bonus-payments]: setting up pays nothing, paying is asynchronous.

Errors come as ``{"error": {"status", "error_code", "title", "detail", ...}}``; ``ProlificError`` makes one
line of them. Every remote object and decision is recorded here (``PlatformStudy``, ``Decision``) before the
call that makes it, so an interrupted call is known and its retry does not make a second one.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from urllib3.exceptions import NewConnectionError

from webapp.experiments.models import Experiment
from webapp.lab.analysis import progress
from webapp.recruit.models import Decision, PlatformStudy
from webapp.recruit.review import Proposal, Submission, propose

PLATFORM = "prolific"
URL_PARAMETERS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
REJECTION_CATEGORIES = ("TOO_QUICKLY", "TOO_SLOWLY", "FAILED_INSTRUCTIONS", "INCOMP_LONGITUDINAL",
                        "FAILED_CHECK", "LOW_EFFORT", "MALINGERING", "NO_CODE", "BAD_CODE", "NO_DATA",
                        "UNSUPP_DEVICE", "OTHER")
TIMEOUT = (5.0, 30.0)  # connect, read (seconds)
# A ``requested`` study row with no error is a create still in flight (or one whose process died): another
# create waits this long before treating it as an unknown outcome, so two clicks never make two studies.
IN_FLIGHT = timedelta(seconds=2 * sum(TIMEOUT))


class ProlificError(Exception):
    """One line: ``Prolific: <their message> (HTTP <status>)``, or without the status when no answer came.

    ``status``: the HTTP status, None when none came; ``unknown``: the request may have been carried out
    although no success answer came (connection lost after sending, timeout, 5xx)."""

    def __init__(self, message: str, status: int | None = None, *, unknown: bool = False):
        self.message = " ".join(str(message).split())
        self.status = status
        self.unknown = unknown
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"Prolific: {self.message}" + (f" (HTTP {self.status})" if self.status is not None else "")


class ProlificUsageError(ProlificError):
    """Refused here before anything was sent (wrong platform, no study, bad argument): the message alone."""

    def __str__(self) -> str:
        return self.message


def _flatten(detail: Any) -> str:
    """Prolific's ``detail`` (a string, a list, or a field -> messages object) as one line."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(t for t in (_flatten(d) for d in detail) if t)
    if isinstance(detail, dict):
        parts = []
        for key, value in detail.items():
            text = _flatten(value)
            if text:
                parts.append(text if key in ("non_field_errors", "detail", "__all__") else f"{key}: {text}")
        return "; ".join(parts)
    return "" if detail is None else str(detail)


def _their_message(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            text = _flatten(err.get("detail")) or _flatten(err.get("title")) or _flatten(err)
        else:
            text = _flatten(err)
        if text:
            return text
    return resp.text.strip()[:300] or resp.reason or "no message"


def _never_sent(e: requests.RequestException) -> bool:
    """Whether the request surely never left: no connection was made (refused, unresolvable, timed out)."""
    if isinstance(e, requests.ConnectTimeout):
        return True
    reason = getattr(e.args[0], "reason", None) if e.args else None
    return isinstance(e, requests.ConnectionError) and isinstance(reason, NewConnectionError)


class ProlificClient:
    """Prolific's REST API, one method per documented endpoint used; raises ``ProlificError``."""

    def __init__(self, token: str, base_url: str | None = None, timeout: tuple[float, float] = TIMEOUT):
        self.base_url = (base_url or settings.PROLIFIC_API_URL).rstrip("/") + "/"
        self.timeout = timeout
        self.session = requests.Session()
        # no automatic retries: a repeated POST could create a second study or pay twice
        adapter = requests.adapters.HTTPAdapter(max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"Authorization": f"Token {token}", "Accept": "application/json",
                                     "User-Agent": "perceptual-lab"})

    def _request(self, method: str, path_or_url: str, body: Any = None) -> Any:
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        try:
            resp = self.session.request(method, url, json=body, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as e:
            if _never_sent(e):
                raise ProlificError(f"no connection to {self.base_url} ({type(e).__name__})") from e
            raise ProlificError(f"no answer from {self.base_url} ({type(e).__name__}: {e})",
                                unknown=True) from e
        if resp.status_code >= 400:
            raise ProlificError(_their_message(resp), resp.status_code, unknown=resp.status_code >= 500)
        if not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError as e:
            raise ProlificError(f"answer is not JSON: {resp.text[:200]}", resp.status_code) from e

    def _same_api(self, url: str) -> bool:
        a, b = urlsplit(url), urlsplit(self.base_url)
        return (a.scheme, a.netloc) == (b.scheme, b.netloc) and a.path.startswith(b.path)

    @staticmethod
    def _id(value: str) -> str:
        return quote(str(value), safe="")

    def list_studies(self) -> list[dict]:
        """[get-studies] every study of the account (short form: id, name, internal_name, status, ...)."""
        return list(self._request("GET", "studies/").get("results") or [])

    def create_study(self, body: dict) -> dict:
        """[create-study] a draft study; returns it (with its ``id``)."""
        return self._request("POST", "studies/", body)

    def get_study(self, study_id: str) -> dict:
        """[get-study]"""
        return self._request("GET", f"studies/{self._id(study_id)}/")

    def transition_study(self, study_id: str, action: str) -> dict:
        """[publish-study] ``action``: PUBLISH, START, PAUSE or STOP; returns the study."""
        return self._request("POST", f"studies/{self._id(study_id)}/transition/", {"action": action})

    def list_submissions(self, study_id: str) -> list[dict]:
        """[get-study-submissions] all pages (id, participant_id, status, return_requested, ...)."""
        out: list[dict] = []
        page: Any = self._request("GET", f"studies/{self._id(study_id)}/submissions/")
        while True:
            out.extend(page.get("results") or [])
            nxt = ((page.get("_links") or {}).get("next") or {}).get("href")
            if not nxt:
                return out
            if not self._same_api(nxt):  # never send the token anywhere else
                raise ProlificError(f"pagination link leaves the API: {nxt}")
            page = self._request("GET", nxt)

    def transition_submission(self, submission_id: str, action: str, *, message: str | None = None,
                              rejection_category: str | None = None) -> dict:
        """[transition-submission] APPROVE, or REJECT with ``message`` and ``rejection_category``."""
        body: dict[str, Any] = {"action": action}
        if message is not None:
            body["message"] = message
        if rejection_category is not None:
            body["rejection_category"] = rejection_category
        return self._request("POST", f"submissions/{self._id(submission_id)}/transition/", body)

    def request_return(self, submission_id: str, reasons: list[str]) -> dict:
        """[request-submission-return]"""
        return self._request("POST", f"submissions/{self._id(submission_id)}/request-return/",
                             {"request_return_reasons": list(reasons)})

    def create_bonus_payments(self, study_id: str, csv_bonuses: str) -> dict:
        """[create-bonus-payments] sets bonuses up (pays nothing); returns ``{id, amount, fees, ...}``."""
        return self._request("POST", "submissions/bonus-payments/",
                             {"study_id": study_id, "csv_bonuses": csv_bonuses})

    def pay_bonus_payments(self, bulk_id: str) -> dict:
        """[pay-bonus-payments] pays a set-up bulk bonus (asynchronously on Prolific's side)."""
        return self._request("POST", f"bulk-bonus-payments/{self._id(bulk_id)}/pay/")


def client_from_env() -> ProlificClient:
    """A client with the token in ``PROLIFIC_TOKEN`` and ``settings.PROLIFIC_API_URL``."""
    token = os.environ.get("PROLIFIC_TOKEN", "").strip()
    if not token:
        raise ProlificUsageError("PROLIFIC_TOKEN is not set: put a Prolific API token (Prolific → API "
                                 "tokens) in the environment")
    return ProlificClient(token, settings.PROLIFIC_API_URL)


# -- the study --------------------------------------------------------------------------------------------

def check_experiment(exp: Experiment) -> None:
    """Refuses an experiment that can't recruit on Prolific (other platform, or no completion code)."""
    if exp.platform != PLATFORM:
        raise ProlificUsageError(f"experiment {exp.slug!r} recruits on {exp.platform!r}, not on Prolific: "
                                 "nothing sent to Prolific")
    if not exp.completion_code.strip():
        raise ProlificUsageError(f"experiment {exp.slug!r} has no completion code; Prolific needs the one "
                                 "code the site shows at the end: nothing sent to Prolific")


def study_url(exp: Experiment, url: str | None = None) -> str:
    """The participant link: ``url`` if given, else ``SITE_URL`` + ``/p/<slug>/``."""
    if url:
        return url
    if not settings.SITE_URL:
        raise ProlificUsageError("no study URL: set SITE_URL (the site's public address) or pass --url")
    return settings.SITE_URL + reverse("crowd:entry", args=[exp.slug])


def external_study_url(url: str) -> str:
    """``url`` with Prolific's three URL placeholders appended (any it already carried replaced)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProlificUsageError(f"study URL {url!r} is not an absolute http(s) URL")
    ours = {"PROLIFIC_PID", "STUDY_ID", "SESSION_ID"}
    kept = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours])
    query = f"{kept}&{URL_PARAMETERS}" if kept else URL_PARAMETERS
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, parts.fragment))


def places_from_plan(exp: Experiment) -> int:
    """Places still needed: ceil(remaining judgments / trials per assignment), at least 1."""
    p = progress(exp)
    remaining = max(0, p["target_judgments"] - p["collected_judgments"])
    return max(1, math.ceil(remaining / max(1, exp.trials_per_assignment)))


def linked_study(exp: Experiment) -> PlatformStudy | None:
    """The Prolific study recorded as created for ``exp`` (the latest), or None."""
    return (PlatformStudy.objects.filter(experiment=exp, platform=PLATFORM, state="created")
            .order_by("-id").first())


def _require_study(exp: Experiment) -> PlatformStudy:
    check_experiment(exp)
    study = linked_study(exp)
    if study is None:
        raise ProlificUsageError(f"no Prolific study is recorded for {exp.slug!r}: run create-study first")
    return study


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProlificUsageError(f"{name} must be a positive whole number, not {value!r}")
    return value


def create_study(exp: Experiment, client: ProlificClient, *, url: str | None, reward: int,
                 places: int | None = None, minutes: int, description: str, user: Any = None,
                 publish: bool = False) -> PlatformStudy:
    """Create (and with ``publish`` publish) the experiment's Prolific study; returns the recorded row.

    ``reward`` in the minor unit (pence/cents), ``minutes`` the estimated completion time, ``places`` by
    default from the plan. The row is written (``requested``) before the create call and completed after it
    (``created`` with the study id, or ``failed`` when Prolific refused). A retry of a row whose outcome is
    unknown first looks for its token among the account's studies. Raises ``ProlificError`` (one line saying
    what exists where)."""
    check_experiment(exp)
    if publish and exp.status != "live":
        raise ProlificUsageError(f"experiment {exp.slug!r} is {exp.status} here; publishing on Prolific "
                                 "would send participants to a closed study: set it live first")
    reward = _positive_int("reward", reward)
    minutes = _positive_int("minutes", minutes)
    places = places_from_plan(exp) if places is None else _positive_int("places", places)
    if not description.strip():
        raise ProlificUsageError("the study needs a description for participants")
    link = external_study_url(study_url(exp, url))

    with transaction.atomic():
        # the experiment row lock orders concurrent creates for it (held only for these few statements)
        Experiment.objects.select_for_update().filter(pk=exp.pk).first()
        rows = PlatformStudy.objects.filter(experiment=exp, platform=PLATFORM)
        done = rows.filter(state="created").order_by("-id").first()
        if done is not None:
            raise ProlificUsageError(f"experiment {exp.slug!r} already has Prolific study {done.remote_id} "
                                     f"(recorded {done.created:%Y-%m-%d %H:%M})")
        pending = rows.filter(state="requested").order_by("-id").first()
        if pending is not None and not pending.error:
            since = pending.details.get("attempted_at") or pending.created.isoformat()
            if timezone.now() - datetime.fromisoformat(since) < IN_FLIGHT:
                raise ProlificUsageError(f"a Prolific create for {exp.slug!r} is in flight since {since}: "
                                         "try again in a minute")
        row = pending or PlatformStudy.objects.create(
            experiment=exp, platform=PLATFORM, sandbox=False, state="requested", created_by=user,
            request_token=f"lab-{exp.pk}-{secrets.token_hex(8)}")
    if pending is not None:
        found = _find_by_token(client, row)  # raises if Prolific can't be asked: the row stays requested
        if found is not None:
            _record_created(row, found)
            return _maybe_publish(exp, client, row, publish)

    body = {
        "name": exp.title,
        "internal_name": f"{exp.slug} {row.request_token}",
        "description": description,
        "external_study_url": link,
        "prolific_id_option": "url_parameters",
        "completion_codes": [{"code": exp.completion_code, "code_type": "COMPLETED",
                              "actions": [{"action": "MANUALLY_REVIEW"}]}],
        "total_available_places": places,
        "estimated_completion_time": minutes,
        "reward": reward,
        "filters": [],
    }
    row.details = {k: body[k] for k in ("name", "internal_name", "external_study_url",
                                        "total_available_places", "estimated_completion_time", "reward")}
    row.details["attempted_at"] = timezone.now().isoformat()
    row.error = ""
    row.save(update_fields=["details", "error"])
    try:
        study = client.create_study(body)
    except ProlificError as e:
        if e.unknown:
            row.error = str(e)
            row.save(update_fields=["error"])
            raise ProlificError(f"{e.message}; the study may or may not exist on Prolific: run create-study "
                                f"again to look for internal name {body['internal_name']!r} and record it",
                                e.status, unknown=True) from e
        row.state, row.error = "failed", str(e)
        row.save(update_fields=["state", "error"])
        raise
    if not study.get("id"):
        row.error = f"Prolific answered without a study id: {str(study)[:200]}"
        row.save(update_fields=["error"])
        raise ProlificError(f"{row.error}; run create-study again to look for {body['internal_name']!r}",
                            unknown=True)
    _record_created(row, study)
    return _maybe_publish(exp, client, row, publish)


def _find_by_token(client: ProlificClient, row: PlatformStudy) -> dict | None:
    for study in client.list_studies():
        if row.request_token in (study.get("internal_name") or ""):
            return study
    return None


def _record_created(row: PlatformStudy, study: dict) -> None:
    row.remote_id, row.state, row.error = str(study["id"]), "created", ""
    row.details = {**row.details, "status": study.get("status", "")}
    row.save(update_fields=["remote_id", "state", "error", "details"])


def _maybe_publish(exp: Experiment, client: ProlificClient, row: PlatformStudy,
                   publish: bool) -> PlatformStudy:
    if publish and row.details.get("status") == "UNPUBLISHED":  # a study found on retry may be out already
        try:
            after = client.transition_study(row.remote_id, "PUBLISH")
        except ProlificError as e:
            raise ProlificError(f"created draft study {row.remote_id} (recorded here) but publishing it "
                                f"failed: {e.message}; run publish {exp.slug} to retry", e.status,
                                unknown=e.unknown) from e
        row.details = {**row.details, "status": after.get("status", "")}
        row.save(update_fields=["details"])
    return row


# site status -> {Prolific status: (action, what it did)}
_SYNC = {
    "live": {"UNPUBLISHED": ("PUBLISH", "published"), "PAUSED": ("START", "resumed")},
    "paused": {"ACTIVE": ("PAUSE", "paused")},
    "closed": {"ACTIVE": ("STOP", "stopped"), "PAUSED": ("STOP", "stopped")},
}


def sync_status(exp: Experiment, status: str, client: ProlificClient) -> str | None:
    """Bring the linked Prolific study in line with the site's ``status`` (``live``: publish, or resume a
    paused one; ``paused``: pause; ``closed``: stop). Returns what it did, None when no study is linked
    (then nothing is called)."""
    study = linked_study(exp)
    if study is None:
        return None
    current = str(client.get_study(study.remote_id).get("status", ""))
    step = _SYNC.get(status, {}).get(current)
    if step is None:
        return (f"Prolific study {study.remote_id} is {current or 'of unknown status'}: "
                f"nothing to do for {status}")
    action, done = step
    after = client.transition_study(study.remote_id, action)
    study.details = {**study.details, "status": after.get("status", "")}
    study.save(update_fields=["details"])
    return f"{done} Prolific study {study.remote_id}"


# -- submissions and decisions ------------------------------------------------------------------------------

def submissions(exp: Experiment, client: ProlificClient) -> list[Submission]:
    """Every submission of the linked study, as ``review.Submission`` (Prolific's status words)."""
    study = _require_study(exp)
    return [Submission(str(s["id"]), str(s.get("participant_id") or ""), str(s.get("status") or ""))
            for s in client.list_submissions(study.remote_id)]


def review(exp: Experiment, client: ProlificClient) -> list[Proposal]:
    """Proposals (``review.propose``) for the submissions awaiting review; decided ones need none."""
    return propose(exp, PLATFORM, [s for s in submissions(exp, client) if s.status == "AWAITING REVIEW"])


@dataclass
class Outcome:
    """What happened to one submission: ``sent`` (done now), ``already`` (done before, nothing sent),
    ``refused`` (not sent: why in ``detail``), ``failed`` (Prolific refused), ``unknown`` (no answer)."""

    submission_id: str
    action: str
    result: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result in ("sent", "already")

    def line(self) -> str:
        tail = f" ({self.detail})" if self.detail else ""
        return f"{self.submission_id}  {self.action}: {self.result}{tail}"


_PAST = {"approve": "approved", "reject": "rejected", "return": "asked to return"}
_VERDICTS = ("approve", "reject", "return")
# a verdict done here that rules another out (a return request leaves approving or rejecting open)
_BLOCKED_BY = {"approve": ("reject",), "reject": ("approve",), "return": ("approve", "reject")}


def _verdicts(exp: Experiment, client: ProlificClient, action: str, items: dict[str, str], *, user: Any,
              send: Callable[[str, str], None], remote_done: Callable[[dict], bool],
              sendable: Callable[[dict], bool]) -> list[Outcome]:
    """Send ``action`` for each ``submission id -> reason`` at most once: a submission decided here, or
    already in that state on Prolific, is reported, not sent; the Decision row is written before sending."""
    study = _require_study(exp)
    remote = {str(s["id"]): s for s in client.list_submissions(study.remote_id)}
    out = []
    for sid, reason in items.items():
        sub = remote.get(sid)
        if sub is None:
            out.append(Outcome(sid, action, "refused",
                               f"not a submission of Prolific study {study.remote_id}"))
            continue
        decided = {d.action: d for d in Decision.objects.filter(platform=PLATFORM, submission_id=sid,
                                                                action__in=_VERDICTS, state="done")}
        if action in decided:
            out.append(Outcome(sid, action, "already",
                               f"{_PAST[action]} here on {decided[action].created:%Y-%m-%d %H:%M}"))
            continue
        blocker = next((a for a in _BLOCKED_BY[action] if a in decided), None)
        if blocker is not None:
            out.append(Outcome(sid, action, "refused", f"already {_PAST[blocker]} here"))
            continue
        worker = str(sub.get("participant_id") or "")
        if remote_done(sub):
            _finish(_decision(exp, sid, worker, action, reason, user), "done")
            out.append(Outcome(sid, action, "already", f"{_PAST[action]} on Prolific before; recorded here"))
            continue
        if not sendable(sub):
            out.append(Outcome(sid, action, "refused", f"it is {sub.get('status')} on Prolific"))
            continue
        decision = _decision(exp, sid, worker, action, reason, user)
        try:
            send(sid, reason)
        except ProlificError as e:
            if e.unknown:
                _finish(decision, "sent", str(e))
                out.append(Outcome(sid, action, "unknown", f"{e}; run it again to make sure"))
            else:
                _finish(decision, "failed", str(e))
                out.append(Outcome(sid, action, "failed", str(e)))
            continue
        _finish(decision, "done")
        out.append(Outcome(sid, action, "sent"))
    return out


def _decision(exp: Experiment, sid: str, worker: str, action: str, reason: str, user: Any) -> Decision:
    """The one (platform, submission, action) row, new or reused from an unfinished try, marked ``sent``."""
    fields = {"experiment": exp, "worker_id": worker, "reason": reason, "decided_by": user, "state": "sent",
              "error": ""}
    try:
        with transaction.atomic():
            d, made = Decision.objects.get_or_create(
                platform=PLATFORM, submission_id=sid, action=action,
                defaults={**fields, "request_token": f"lab-{secrets.token_hex(12)}"})
    except IntegrityError:  # a concurrent call made it first
        d, made = Decision.objects.get(platform=PLATFORM, submission_id=sid, action=action), False
    if not made:
        for k, v in fields.items():
            setattr(d, k, v)
        d.save(update_fields=list(fields))
    return d


def _finish(decision: Decision, state: str, error: str = "") -> None:
    decision.state, decision.error = state, error
    decision.save(update_fields=["state", "error"])


def _ids(submission_ids: Iterable[str]) -> list[str]:
    ids = list(dict.fromkeys(str(s).strip() for s in submission_ids if str(s).strip()))
    if not ids:
        raise ProlificUsageError("no submission ids given")
    return ids


def approve(exp: Experiment, client: ProlificClient, submission_ids: Iterable[str], *,
            user: Any = None) -> list[Outcome]:
    """Approve submissions (only AWAITING REVIEW ones; each at most once)."""
    def send(sid: str, _reason: str) -> None:
        client.transition_submission(sid, "APPROVE")

    return _verdicts(exp, client, "approve", dict.fromkeys(_ids(submission_ids), ""), user=user, send=send,
                     remote_done=lambda s: s.get("status") == "APPROVED",
                     sendable=lambda s: s.get("status") == "AWAITING REVIEW")


def _reject_many(exp: Experiment, client: ProlificClient, items: dict[str, tuple[str, str]],
                 user: Any) -> list[Outcome]:
    def send(sid: str, _reason: str) -> None:
        message, category = items[sid]
        client.transition_submission(sid, "REJECT", message=message, rejection_category=category)

    return _verdicts(exp, client, "reject", {sid: message for sid, (message, _) in items.items()}, user=user,
                     send=send, remote_done=lambda s: s.get("status") == "REJECTED",
                     sendable=lambda s: s.get("status") == "AWAITING REVIEW")


def reject(exp: Experiment, client: ProlificClient, submission_ids: Iterable[str], *, reason: str,
           category: str, user: Any = None) -> list[Outcome]:
    """Reject submissions with ``reason`` (the message to the participant; Prolific wants at least 100
    characters) and ``category`` (one of REJECTION_CATEGORIES); each at most once."""
    return _reject_many(exp, client, {sid: (reason, category) for sid in _ids(submission_ids)}, user)


def request_return(exp: Experiment, client: ProlificClient, submission_ids: Iterable[str], *,
                   reasons: list[str], user: Any = None) -> list[Outcome]:
    """Ask participants to return their submissions (``reasons``: Prolific builds the message from them)."""
    reasons = [r.strip() for r in reasons if r and r.strip()]
    if not reasons:
        raise ProlificUsageError("a return request needs at least one reason")

    def send(sid: str, _reason: str) -> None:
        client.request_return(sid, reasons)

    items = dict.fromkeys(_ids(submission_ids), "; ".join(reasons))
    return _verdicts(exp, client, "return", items, user=user, send=send,
                     remote_done=lambda s: bool(s.get("return_requested")) or s.get("status") == "RETURNED",
                     sendable=lambda s: s.get("status") in ("ACTIVE", "AWAITING REVIEW"))


def approve_proposed(exp: Experiment, client: ProlificClient, *, user: Any = None) -> list[Outcome]:
    """Approve every submission ``review`` proposes to approve."""
    ids = [p.submission.submission_id for p in review(exp, client) if p.action == "approve"]
    return approve(exp, client, ids, user=user) if ids else []


def category_for(reasons: list[str]) -> str:
    """The rejection category for QC's first reason."""
    first = reasons[0] if reasons else ""
    if first.startswith("sentinel"):
        return "FAILED_CHECK"
    if first.startswith("repeat"):
        return "LOW_EFFORT"
    if "faster than" in first:
        return "TOO_QUICKLY"
    if "not completed" in first:
        return "NO_CODE"
    return "OTHER"


def rejection_message(exp: Experiment, reasons: list[str], reason: str | None = None) -> str:
    """The message to a participant for QC's ``reasons`` (Prolific wants at least 100 characters)."""
    found = "; ".join(reasons) or "the submission did not pass our checks"
    if reason:
        return f"{reason} ({found})"
    return (f"Thank you for taking part in \"{exp.title}\". We could not approve this submission because our "
            f"quality checks found: {found}. If you think this is a mistake, please message us on Prolific.")


def reject_proposed(exp: Experiment, client: ProlificClient, *, reason: str | None = None,
                    category: str | None = None, user: Any = None) -> list[Outcome]:
    """Reject every submission ``review`` proposes to reject, each with a message from its QC reasons
    (``reason`` in front of them if given) and the category they point to (or ``category``)."""
    items = {p.submission.submission_id: (rejection_message(exp, p.reasons, reason),
                                          category or category_for(p.reasons))
             for p in review(exp, client) if p.action == "reject"}
    return _reject_many(exp, client, items, user) if items else []


# -- bonuses ----------------------------------------------------------------------------------------------

def _amount(value: Any) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ProlificUsageError(f"bonus amount {value!r} is not a number") from None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise ProlificUsageError(f"bonus amount {value!r} must be positive, in the currency's major unit "
                                 "with at most 2 decimals (0.50)")
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def bonus(exp: Experiment, client: ProlificClient, who: str, amount: Any, reason: str,
          user: Any = None) -> Outcome:
    """Pay a bonus of ``amount`` (major unit: 0.50) to the participant of submission ``who`` (a submission
    or participant id of the linked study): a bulk bonus is set up, recorded, then paid. A retry after a
    failed or unanswered payment pays the bonus already set up for the same submission and amount."""
    study = _require_study(exp)
    amount = _amount(amount)
    if not reason.strip():
        raise ProlificUsageError("a bonus needs a reason (kept here with the payment)")
    sub = next((s for s in client.list_submissions(study.remote_id)
                if who in (str(s["id"]), str(s.get("participant_id")))), None)
    if sub is None:
        raise ProlificUsageError(f"{who} is neither a submission nor a participant of Prolific study "
                                 f"{study.remote_id}: no bonus sent")
    sid, participant = str(sub["id"]), str(sub.get("participant_id") or "")
    pending = (Decision.objects.filter(platform=PLATFORM, action="bonus", submission_id=sid, amount=amount)
               .exclude(state="done").exclude(remote_id="").order_by("-id").first())
    if pending is None:
        # a set-up whose answer never came stays unpaid on Prolific (setting up pays nothing): say so
        Decision.objects.filter(platform=PLATFORM, action="bonus", submission_id=sid, state="sent",
                                remote_id="").update(state="failed",
                                                     error="set-up answer never came; never paid from here")
        decision = Decision.objects.create(
            experiment=exp, platform=PLATFORM, submission_id=sid, worker_id=participant, action="bonus",
            reason=reason, amount=amount, request_token=f"lab-{secrets.token_hex(12)}", state="sent",
            decided_by=user)
        try:
            made = client.create_bonus_payments(study.remote_id, f"{participant},{amount}\n")
        except ProlificError as e:
            _finish(decision, "sent" if e.unknown else "failed", str(e))
            raise
        decision.remote_id = str(made.get("id") or "")
        decision.save(update_fields=["remote_id"])
        if not decision.remote_id:
            _finish(decision, "failed", f"set-up answer has no id: {str(made)[:200]}")
            raise ProlificError(f"bonus set-up answer has no id: {str(made)[:200]}; nothing paid")
    else:
        decision = pending
        decision.state, decision.error = "sent", ""
        decision.save(update_fields=["state", "error"])
    try:
        client.pay_bonus_payments(decision.remote_id)
    except ProlificError as e:
        _finish(decision, "sent" if e.unknown else "failed", str(e))
        raise ProlificError(f"bulk bonus payment {decision.remote_id} ({amount} to {participant}) is set up "
                            f"on Prolific and recorded here, but paying it failed: {e.message}; run the same "
                            "bonus again to pay that one", e.status, unknown=e.unknown) from e
    _finish(decision, "done")
    return Outcome(sid, "bonus", "sent",
                   f"{amount} to {participant}, bulk bonus payment {decision.remote_id}")
