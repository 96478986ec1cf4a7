"""A WSGI shortcut for the request that dominates a live study: a new judgment.

``JudgeFastPath(app)`` wraps Django's WSGI application. It answers ``POST /a/<token>/judge`` itself when
the request is well formed and the judgment is either new and accepted (201) or a replay of one stored for
an open assignment (200): the body is parsed and validated by ``judging.validate_judgment``, stored by
``judging.insert_batch`` (one INSERT ... SELECT for all the judgments this process's threads post at the
same time: ``groupcommit.GroupCommit``) or answered by ``judging.stored_answer``, on one database
connection of the worker process's own, and the answer carries the headers Django's middleware would add.
That skips Django's request object, middleware, URL resolver and the per-request connection health check,
which cost several times the statement itself.

Everything else goes to Django unchanged (the body handed on intact): other URLs and methods, any request
that fails a check (header, content type, size, JSON, fields, host, scheme), and any judgment neither
stored nor answered (a closed assignment, an unknown token, a uuid reused for another judgment, a lost
database connection). The view then gives the full answer with the same functions, so the contract is
written once; since those statements change nothing unless they store the judgment, handing on is safe.

Used only on PostgreSQL in autocommit (``make serve-prod``); ``CROWD_JUDGE_FASTPATH=0`` switches it off.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.http.request import split_domain_port, validate_host
from django.utils import timezone

from webapp.crowd.groupcommit import GroupCommit
from webapp.crowd.judging import (
    created_body,
    insert_batch,
    prepare_statements,
    stored_answer,
    validate_judgment,
)

log = logging.getLogger(__name__)
STATUS = {200: "200 OK", 201: "201 Created"}
# Django's <uuid:...> converter accepts lower-case hex only; anything else is Django's to answer (404).
JUDGE_PATH = re.compile(r"/a/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/judge")


def security_headers(secure: bool) -> list[tuple[str, str]]:
    """The headers Django's SecurityMiddleware and XFrameOptionsMiddleware add to a JSON answer."""
    h = [("X-Frame-Options", settings.X_FRAME_OPTIONS)]
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        h.append(("X-Content-Type-Options", "nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        h.append(("Referrer-Policy", policy if isinstance(policy, str) else ",".join(policy)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        h.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    if secure and settings.SECURE_HSTS_SECONDS:
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        hsts += "; includeSubDomains" if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS else ""
        hsts += "; preload" if settings.SECURE_HSTS_PRELOAD else ""
        h.append(("Strict-Transport-Security", hsts))
    return h


def buffer_body(environ: dict) -> None:
    """Read a request body of up to DATA_UPLOAD_MAX_MEMORY_SIZE bytes now, into ``wsgi.input``.

    The body is read before the request takes one of the WEB_VIEW_THREADS view slots: a client that sends
    half a body then holds one of the worker's threads until it gives up, but never a view slot (with
    Django reading the body inside the view, two such clients froze every page of a worker). Larger or
    chunked bodies are left to Django, which refuses them without reading past its limit. The threads
    themselves only a buffering proxy can protect (granian has no body timeout): README, Production.
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if 0 < length <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length))


class JudgeFastPath:
    """WSGI middleware: new judgments (and replays of stored ones) answered directly, every other request
    passed to ``app``."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.enabled = (settings.CROWD_JUDGE_FASTPATH and connection.vendor == "postgresql"
                        and connection.settings_dict["AUTOCOMMIT"]
                        and not connection.settings_dict.get("ATOMIC_REQUESTS"))
        # Django's views (entry, state, the lab) hold the interpreter lock for milliseconds and the consent
        # POST holds the experiment's row lock meanwhile: with many of them at once in one process, each
        # one's critical section stretches while the others run. Only this many at a time; judgments,
        # which mostly wait for their commit, use the worker's other threads.
        self._views = threading.BoundedSemaphore(settings.WEB_VIEW_THREADS)
        self._db = None
        self._prepared_on = None  # the driver connection the statements are prepared on
        self.group: GroupCommit[tuple[uuid.UUID, dict], tuple[int, bytes] | None] = GroupCommit(
            self._flush, linger=settings.CROWD_GROUP_COMMIT_LINGER_MS / 1000)
        self.headers = {secure: [("Content-Type", "application/json"), *security_headers(secure)]
                        for secure in (False, True)}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if self.enabled and environ.get("REQUEST_METHOD") == "POST":
            m = JUDGE_PATH.fullmatch(environ.get("PATH_INFO", ""))
            if m:
                answer = self._judge(environ, m.group(1))
                if answer is not None:
                    status, headers, body = answer
                    start_response(status, headers)
                    return [body]
        buffer_body(environ)
        with self._views:
            return self.app(environ, start_response)

    def _judge(self, environ: dict, token: str) -> tuple[str, list, bytes] | None:
        """(status, headers, body) for a stored new judgment or a replay; None to hand the request to
        Django (then ``environ['wsgi.input']`` again holds the whole body)."""
        if environ.get("HTTP_X_ASSIGNMENT_TOKEN") != token:
            return None
        if environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip() != "application/json":
            return None
        secure = self._secure(environ)
        if (settings.SECURE_SSL_REDIRECT and not secure) or not self._host_allowed(environ):
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= settings.CROWD_MAX_BODY_BYTES:
            return None
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # Django reads it again if the request is handed on
        if len(body) != length:
            return None
        try:
            data = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError):  # as the view: UTF-8 only
            return None
        v, _ = validate_judgment(data) if isinstance(data, dict) else (None, None)
        answer = None if v is None else self._store(uuid.UUID(token), v)
        if answer is None:
            return None
        status, out = answer
        return STATUS[status], [*self.headers[secure], ("Content-Length", str(len(out)))], out

    def _store(self, token: uuid.UUID, v: dict) -> tuple[int, bytes] | None:
        """Store ``v`` (201) or answer a replay of a stored judgment to an open assignment (200), in a
        batch with the judgments other threads of this process post meanwhile (``GroupCommit``); None
        for anything else (the request then goes to Django)."""
        if connection.in_atomic_block:
            return None
        return self.group.submit((token, v))

    def _flush(self, rows: Sequence[tuple[uuid.UUID, dict]]) -> list[tuple[int, bytes] | None]:
        """The answers to ``rows`` (token, clean values), stored with one statement and one commit.

        Runs on this process's own judge connection (``db``; one batch at a time, so one connection per
        worker however many threads it has), with the driver's cursor (no health-check ping: the
        statement itself shows whether the connection works) and statements prepared once per
        connection. A row that repeats the uuid or the slot of an earlier row is left out of the
        statement and answered from what is stored, as a replay is. On any database error: None for
        every row, after closing the connection so that the next batch starts from a fresh one."""
        db = self.db
        try:
            if db.close_at is not None and time.monotonic() >= db.close_at:
                db.close()  # CONN_MAX_AGE, as Django does for its own connections after a request
            db.ensure_connection()
            raw = db.connection
            with raw.cursor() as cur:
                if self._prepared_on is not raw:
                    prepare_statements(cur)
                    self._prepared_on = raw
                now = timezone.now()
                first, uuids, slots = [], set(), set()
                for k, (token, v) in enumerate(rows):
                    if v["uuid"] not in uuids and (token, v["position"]) not in slots:
                        first.append(k)
                    uuids.add(v["uuid"])
                    slots.add((token, v["position"]))
                # sorted by uuid: two batches that share uuids (a retry racing its original in another
                # worker) take their unique-index locks in the same order
                first.sort(key=lambda k: rows[k][1]["uuid"])
                stored = insert_batch(cur, db, [rows[k] for k in first], now, prepared=True)
                new = {k for k in first if rows[k][1]["uuid"] in stored}
                return [(201, created_body(v)) if k in new
                        else stored_answer(cur, db, token, v, open_at=now, prepared=True)
                        for k, (token, v) in enumerate(rows)]
        except (DatabaseError, db.Database.Error) as exc:
            log.warning("judge fast path: %s: %s; handing %d request(s) to Django", type(exc).__name__, exc,
                        len(rows))
            self.close()
            return [None] * len(rows)

    @property
    def db(self):
        """This process's judge connection: a Django connection of its own (not a thread's), used by the
        leader of each batch in turn."""
        if self._db is None:
            self._db = connections.create_connection(DEFAULT_DB_ALIAS)
            self._db.inc_thread_sharing()  # used by whichever thread leads the batch
        return self._db

    def close(self) -> None:
        """Close the judge connection (the next batch opens a new one)."""
        if self._db is not None:
            try:
                self._db.close()
            except (DatabaseError, self._db.Database.Error):
                pass

    @staticmethod
    def _secure(environ: dict) -> bool:
        """Django's ``request.is_secure()``."""
        header = settings.SECURE_PROXY_SSL_HEADER
        if header:
            name, value = header
            if name in environ:
                return environ[name].split(",", 1)[0].strip() == value
        return environ.get("wsgi.url_scheme") == "https"

    @staticmethod
    def _host_allowed(environ: dict) -> bool:
        """Django's ``request.get_host()`` check, for the plain Host header (anything else is Django's)."""
        host = environ.get("HTTP_HOST")
        if not host or settings.USE_X_FORWARDED_HOST or not settings.ALLOWED_HOSTS:
            return False
        domain, _ = split_domain_port(host)
        return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)
