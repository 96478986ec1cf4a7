"""A local stand-in for Prolific's REST API, spoken to over real HTTP (http.server in a thread on 127.0.0.1).

It serves the endpoints ``webapp/recruit/prolific.py`` uses, as Prolific's API reference documents them
(https://docs.prolific.com/api-reference/, operation ids in brackets):

- ``GET/POST studies/`` [get-studies, create-study], ``GET studies/{id}/`` [get-study],
  ``POST studies/{id}/transition/`` [publish-study: PUBLISH, START, PAUSE, STOP],
  ``GET studies/{id}/submissions/`` [get-study-submissions, paginated with ``_links.next.href``]
- ``GET submissions/{id}/`` [get-submission], ``POST submissions/{id}/transition/`` [transition-submission],
  ``POST submissions/{id}/request-return/`` [request-submission-return]
- ``POST submissions/bonus-payments/`` [create-bonus-payments], ``POST bulk-bonus-payments/{id}/pay/``
  [pay-bonus-payments]

It keeps state (studies, submissions, bulk bonuses), checks ``Authorization: Token <token>`` and every body
against what the reference documents (required fields, types, allowed values; a rejection needs a message of
at least 100 characters and a category from the documented list), and answers errors in Prolific's error
shape ``{"error": {"status", "error_code", "title", "detail", "additional_information"}}`` (the error codes
here are made up). Every request is recorded in ``requests``.

``drop[operation_id] = "after"`` applies the next such request and then closes the connection without an
answer (the caller cannot know it happened); ``"before"`` closes it without applying anything.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# transition-submission: rejection_category
REJECTION_CATEGORIES = {
    "TOO_QUICKLY", "TOO_SLOWLY", "FAILED_INSTRUCTIONS", "INCOMP_LONGITUDINAL", "FAILED_CHECK", "LOW_EFFORT",
    "MALINGERING", "NO_CODE", "BAD_CODE", "NO_DATA", "UNSUPP_DEVICE", "OTHER",
}
SUBMISSION_ACTIONS = {"APPROVE", "REJECT", "COMPLETE", "RETURN", "SCREEN_OUT", "START", "UNREJECT",
                      "UNRETURN"}
# create-study: prolific_id_option, completion_codes[].code_type, completion_codes[].actions[].action
PROLIFIC_ID_OPTIONS = {"question", "url_parameters", "not_required"}
CODE_TYPES = {"COMPLETED", "FAILED_ATTENTION_CHECK", "FOLLOW_UP_STUDY", "GIVE_BONUS", "INCOMPATIBLE_DEVICE",
              "NO_CONSENT", "OTHER", "FIXED_SCREENOUT"}
CODE_ACTIONS = {"AUTOMATICALLY_APPROVE", "MANUALLY_REVIEW", "ADD_TO_PARTICIPANT_GROUP",
                "REMOVE_FROM_PARTICIPANT_GROUP", "REQUEST_RETURN", "DYNAMIC_PAYMENT",
                "FIXED_SCREEN_OUT_PAYMENT"}
# publish-study: action -> (statuses it applies to, the status after)
STUDY_TRANSITIONS = {
    "PUBLISH": ({"UNPUBLISHED"}, "ACTIVE"),
    "PAUSE": ({"ACTIVE"}, "PAUSED"),
    "START": ({"PAUSED"}, "ACTIVE"),
    "STOP": ({"ACTIVE", "PAUSED"}, None),  # AWAITING REVIEW, or COMPLETED when nothing is left to review
}


@dataclass
class Recorded:
    """One request as the server saw it."""

    operation: str  # the documented operation id, or "unknown"
    method: str
    path: str  # below the API root, e.g. "studies/" or "submissions/<id>/transition/"
    query: dict[str, list[str]]
    body: Any  # the parsed JSON body, or None
    authorization: str | None


class ApiError(Exception):
    def __init__(self, status: int, title: str, detail: Any, code: int):
        super().__init__(title)
        self.status, self.title, self.detail, self.code = status, title, detail, code

    def body(self) -> dict:
        return {"error": {"status": self.status, "error_code": self.code, "title": self.title,
                          "detail": self.detail, "additional_information": f"/api/v1/errors/{self.code}",
                          "traceback": None, "interactive": False}}


def _invalid(detail: Any) -> ApiError:
    return ApiError(400, "Invalid request", detail, 140001)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _new_id() -> str:
    return secrets.token_hex(12)  # Prolific ids look like MongoDB ObjectIds


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class FakeProlific:
    """The server and its state. ``start()`` binds a free port; ``url`` is the API root to give a client."""

    API_ROOT = "/api/v1/"

    def __init__(self, token: str = "test-prolific-token", page_size: int = 2):
        self.token = token
        self.page_size = page_size  # small, so that listing submissions has to follow ``next``
        self.studies: dict[str, dict] = {}
        self.submissions: dict[str, dict] = {}
        self.bonuses: dict[str, dict] = {}
        self.requests: list[Recorded] = []
        self.drop: dict[str, str] = {}
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------------------
    def start(self) -> FakeProlific:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-prolific", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{self.API_ROOT}"

    # -- what a test sets up and looks at ---------------------------------------------------------------
    def add_submission(self, study_id: str, participant_id: str, status: str = "AWAITING REVIEW") -> str:
        """A participant's submission to ``study_id`` (as if they had taken part); returns its id."""
        sid = _new_id()
        with self.lock:
            self.submissions[sid] = {
                "id": sid, "study_id": study_id, "participant": participant_id, "status": status,
                "started_at": _now(), "completed_at": _now() if status != "ACTIVE" else None,
                "entered_code": None, "return_requested": None, "bonus_payments": [],
            }
        return sid

    def calls(self, operation: str) -> list[Recorded]:
        """The recorded requests of one documented operation (e.g. ``"transition-submission"``)."""
        return [r for r in self.requests if r.operation == operation]

    # -- the API ----------------------------------------------------------------------------------------
    def route(self, method: str, path: str) -> tuple[str, Any, dict[str, str]]:
        """``(operation id, handler, path arguments)`` for a request; raises ApiError 404/405."""
        table = [
            (r"studies/", {"GET": ("get-studies", self.list_studies), "POST": ("create-study", self.create)}),
            (r"studies/(?P<id>[^/]+)/", {"GET": ("get-study", self.get_study)}),
            (r"studies/(?P<id>[^/]+)/transition/", {"POST": ("publish-study", self.transition_study)}),
            (r"studies/(?P<id>[^/]+)/submissions/",
             {"GET": ("get-study-submissions", self.list_submissions)}),
            (r"submissions/bonus-payments/", {"POST": ("create-bonus-payments", self.create_bonuses)}),
            (r"submissions/(?P<id>[^/]+)/", {"GET": ("get-submission", self.get_submission)}),
            (r"submissions/(?P<id>[^/]+)/transition/",
             {"POST": ("transition-submission", self.transition_submission)}),
            (r"submissions/(?P<id>[^/]+)/request-return/",
             {"POST": ("request-submission-return", self.request_return)}),
            (r"bulk-bonus-payments/(?P<id>[^/]+)/pay/", {"POST": ("pay-bonus-payments", self.pay_bonuses)}),
        ]
        for pattern, methods in table:
            m = re.fullmatch(pattern, path)
            if m:
                if method not in methods:
                    raise ApiError(405, "Method not allowed", f'Method "{method}" not allowed.', 140005)
                op, handler = methods[method]
                return op, handler, m.groupdict()
        raise ApiError(404, "Not found", "Not found.", 140004)

    def _study(self, study_id: str) -> dict:
        if study_id not in self.studies:
            raise ApiError(404, "Not found", "Study not found.", 140004)
        return self.studies[study_id]

    def _submission(self, submission_id: str) -> dict:
        if submission_id not in self.submissions:
            raise ApiError(404, "Not found", "Submission not found.", 140004)
        return self.submissions[submission_id]

    def create(self, body: Any, query: dict, **_) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise _invalid({"non_field_errors": ["Expected a JSON object."]})
        errors: dict[str, list[str]] = {}
        for key in ("name", "description", "external_study_url"):
            if not isinstance(body.get(key), str) or not body[key].strip():
                errors[key] = ["This field is required."]
        url = body.get("external_study_url")
        if isinstance(url, str) and url.strip():
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                errors["external_study_url"] = ["Enter a valid URL."]
        if body.get("prolific_id_option") not in PROLIFIC_ID_OPTIONS:
            errors["prolific_id_option"] = [f"Must be one of {sorted(PROLIFIC_ID_OPTIONS)}."]
        elif (body["prolific_id_option"] == "url_parameters" and isinstance(url, str)
              and "{{%PROLIFIC_PID%}}" not in url):
            errors["external_study_url"] = ["With url_parameters the URL must carry {{%PROLIFIC_PID%}}."]
        if "internal_name" in body and not isinstance(body["internal_name"], str | None):
            errors["internal_name"] = ["Must be a string."]
        codes = body.get("completion_codes")
        if not isinstance(codes, list) or not codes:
            errors["completion_codes"] = ["Specify at least one completion code."]
        else:
            seen: set[str] = set()
            for i, c in enumerate(codes):
                problem = None
                if not isinstance(c, dict) or not isinstance(c.get("code"), str) or not c["code"]:
                    problem = "code is required"
                elif c["code"] in seen:
                    problem = "each code must be unique within a study"
                elif c.get("code_type") not in CODE_TYPES:
                    problem = f"code_type must be one of {sorted(CODE_TYPES)}"
                elif not isinstance(c.get("actions"), list) or not all(
                        isinstance(a, dict) and a.get("action") in CODE_ACTIONS for a in c["actions"]):
                    problem = f"actions must be a list of {{action}} with action in {sorted(CODE_ACTIONS)}"
                if problem:
                    errors[f"completion_codes[{i}]"] = [problem]
                else:
                    seen.add(c["code"])
        for key in ("total_available_places", "estimated_completion_time", "reward"):
            if not _is_int(body.get(key)) or body[key] < 1:
                errors[key] = ["A positive integer is required."]
        if not isinstance(body.get("filters"), list):
            errors["filters"] = ["This field is required (a list; empty for no filters)."]
        if errors:
            raise _invalid(errors)
        study = dict(body, id=_new_id(), status="UNPUBLISHED", date_created=_now(), published_at=None)
        self.studies[study["id"]] = study
        return 201, study

    def list_studies(self, body: Any, query: dict, **_) -> tuple[int, Any]:
        wanted = None
        if query.get("state"):
            wanted = set(query["state"][0].strip("()").split("|"))
        results = [{"id": s["id"], "name": s["name"], "internal_name": s.get("internal_name"),
                    "status": s["status"], "study_type": "SINGLE", "total_available_places":
                    s["total_available_places"], "reward": s["reward"], "date_created": s["date_created"]}
                   for s in self.studies.values() if wanted is None or s["status"] in wanted]
        return 200, {"results": results}

    def get_study(self, body: Any, query: dict, id: str) -> tuple[int, Any]:
        return 200, self._study(id)

    def transition_study(self, body: Any, query: dict, id: str) -> tuple[int, Any]:
        study = self._study(id)
        action = body.get("action") if isinstance(body, dict) else None
        if action not in STUDY_TRANSITIONS:
            raise _invalid({"action": [f"Must be one of {sorted(STUDY_TRANSITIONS)}."]})
        allowed, after = STUDY_TRANSITIONS[action]
        if study["status"] not in allowed:
            raise _invalid(f"A study with status {study['status']} cannot be transitioned with {action}.")
        if after is None:
            waiting = any(s["study_id"] == id and s["status"] == "AWAITING REVIEW"
                          for s in self.submissions.values())
            after = "AWAITING REVIEW" if waiting else "COMPLETED"
        study["status"] = after
        if action == "PUBLISH":
            study["published_at"] = _now()
        return 200, study

    def list_submissions(self, body: Any, query: dict, id: str) -> tuple[int, Any]:
        self._study(id)
        rows = [s for s in self.submissions.values() if s["study_id"] == id]
        offset = int(query.get("offset", ["0"])[0])
        limit = int(query.get("limit", [str(self.page_size)])[0])
        page = rows[offset:offset + limit]
        here = f"{self.url}studies/{id}/submissions/"
        nxt = f"{here}?offset={offset + limit}&limit={limit}" if offset + limit < len(rows) else None
        results = [{"id": s["id"], "participant_id": s["participant"], "status": s["status"],
                    "started_at": s["started_at"], "completed_at": s["completed_at"],
                    "study_code": s["entered_code"], "return_requested": s["return_requested"],
                    "has_siblings": False} for s in page]
        return 200, {"results": results, "meta": {"count": len(rows)},
                     "_links": {"self": {"href": f"{here}?offset={offset}&limit={limit}", "title": "Current"},
                                "next": {"href": nxt, "title": "Next"}}}

    def get_submission(self, body: Any, query: dict, id: str) -> tuple[int, Any]:
        return 200, self._submission(id)

    def transition_submission(self, body: Any, query: dict, id: str) -> tuple[int, Any]:
        sub = self._submission(id)
        if not isinstance(body, dict) or body.get("action") not in SUBMISSION_ACTIONS:
            raise _invalid({"action": [f"Must be one of {sorted(SUBMISSION_ACTIONS)}."]})
        action = body["action"]
        if action not in ("APPROVE", "REJECT"):
            raise _invalid({"action": [f"{action} is not served by this test server."]})
        if action == "REJECT":
            errors = {}
            message = body.get("message")
            if not isinstance(message, str) or len(message) < 100:
                errors["message"] = ["The rejection message must be at least 100 characters long."]
            if body.get("rejection_category") not in REJECTION_CATEGORIES:
                errors["rejection_category"] = [f"Must be one of {sorted(REJECTION_CATEGORIES)}."]
            if errors:
                raise _invalid(errors)
        target = "APPROVED" if action == "APPROVE" else "REJECTED"
        if sub["status"] != target:  # the documented idempotency: the same request twice is ignored
            if sub["status"] != "AWAITING REVIEW":
                raise _invalid(f"A submission with status {sub['status']} cannot be transitioned with "
                               f"{action}.")
            sub["status"] = target
            if action == "REJECT":
                sub["rejection"] = {"message": body["message"], "category": body["rejection_category"]}
        return 200, {k: sub[k] for k in ("id", "started_at", "status", "study_id", "completed_at",
                                         "entered_code", "participant")}

    def request_return(self, body: Any, query: dict, id: str) -> tuple[int, Any]:
        sub = self._submission(id)
        reasons = body.get("request_return_reasons") if isinstance(body, dict) else None
        if (not isinstance(reasons, list) or not reasons
                or not all(isinstance(r, str) and r.strip() for r in reasons)):
            raise _invalid({"request_return_reasons": ["A non-empty list of reasons is required."]})
        if sub["status"] not in ("ACTIVE", "AWAITING REVIEW"):
            raise _invalid(f"A return cannot be requested for a submission with status {sub['status']}.")
        if sub["return_requested"]:
            raise _invalid("A return has already been requested for this submission.")
        sub["return_requested"] = _now()
        sub["return_reasons"] = list(reasons)
        return 200, {k: sub[k] for k in ("id", "status", "participant", "return_requested")}

    def create_bonuses(self, body: Any, query: dict, **_) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise _invalid({"non_field_errors": ["Expected a JSON object."]})
        study_id, csv_text = body.get("study_id"), body.get("csv_bonuses")
        if not isinstance(study_id, str) or not isinstance(csv_text, str) or not csv_text.strip():
            raise _invalid({"study_id": ["Required."],
                            "csv_bonuses": ["Required: <participant_id>,<amount> lines."]})
        self._study(study_id)
        takers = {s["participant"] for s in self.submissions.values() if s["study_id"] == study_id}
        takers |= {s["id"] for s in self.submissions.values() if s["study_id"] == study_id}
        total, wrong, lines = Decimal(0), [], []
        for line in csv_text.strip().splitlines():
            who, _, amount = line.strip().partition(",")
            try:
                value = Decimal(amount)
            except InvalidOperation:
                value = Decimal(-1)
            if who not in takers or not value > 0 or value.as_tuple().exponent < -2:
                wrong.append(line.strip())
            else:
                total += value
                lines.append((who, str(value)))
        if wrong:
            raise _invalid({"csv_bonuses": [f"Invalid or unknown entries: {', '.join(wrong)}"]})
        minor = float(total * 100)
        bonus = {"id": _new_id(), "study": study_id, "amount": minor, "fees": round(minor / 3, 2), "vat": 0.0,
                 "total_amount": round(minor * 4 / 3, 2), "lines": lines, "paid": False}
        self.bonuses[bonus["id"]] = bonus
        return 201, {k: bonus[k] for k in ("id", "study", "amount", "fees", "vat", "total_amount")}

    def pay_bonuses(self, body: Any, query: dict, id: str) -> tuple[int, Any]:
        if id not in self.bonuses:
            raise ApiError(404, "Not found", "Bulk bonus payment not found.", 140004)
        bonus = self.bonuses[id]
        if bonus["paid"]:
            raise _invalid("This bonus payment has already been paid.")
        bonus["paid"] = True
        return 202, None


def _handler_for(fake: FakeProlific) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, payload: Any) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            root = FakeProlific.API_ROOT
            path = parts.path[len(root):] if parts.path.startswith(root) else None
            query = parse_qs(parts.query)
            body: Any = None
            bad_json = False
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    bad_json = True
            with fake.lock:
                try:
                    if path is None:
                        raise ApiError(404, "Not found", "Not found.", 140004)
                    op, handler, args = fake.route(self.command, path)
                except ApiError as e:
                    op, handler, args = "unknown", None, {}
                    routing_error = e
                else:
                    routing_error = None
                auth = self.headers.get("Authorization")
                fake.requests.append(Recorded(op, self.command, path or parts.path, query, body, auth))
                try:
                    if routing_error:
                        raise routing_error
                    if auth != f"Token {fake.token}":
                        raise ApiError(401, "Not authenticated", "Invalid token.", 140100)
                    if self.command == "POST" and raw:
                        if self.headers.get_content_type() != "application/json":
                            raise ApiError(415, "Unsupported media type",
                                           "Unsupported media type in request.", 140015)
                        if bad_json:
                            raise _invalid("JSON parse error.")
                    mode = fake.drop.pop(op, None)
                    if mode == "before":
                        self.close_connection = True
                        return
                    status, payload = handler(body, query, **args)
                    if mode == "after":
                        self.close_connection = True
                        return
                except ApiError as e:
                    status, payload = e.status, e.body()
            self._answer(status, payload)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

    return Handler
