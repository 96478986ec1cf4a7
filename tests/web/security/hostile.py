"""Harness for the hostile-input tests: a database fingerprint, one-case probes, and the tally.

``probe(kind, send)`` fingerprints every project table (row count + sha256 over the rows), runs ``send``
(one malformed request or command) inside a savepoint, fingerprints again before rolling the savepoint
back (so one wrongly accepted case cannot leak into the next), and records the outcome in ``TALLY``.
``conftest.py`` prints the totals at the end of the run.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import DatabaseError, connection, transaction

# Sessions are Django's cache of who is logged in, not project data; migrations/content types never change.
_SKIP_TABLES = {"django_session", "django_migrations", "django_content_type"}


def db_fingerprint() -> dict[str, tuple[int, str]]:
    """{table: (row count, sha256 over all rows in primary-key order)} for every project table."""
    out = {}
    with connection.cursor() as cur:
        for table in sorted(connection.introspection.table_names(cur)):
            if table in _SKIP_TABLES:
                continue
            cur.execute(f"SELECT * FROM {connection.ops.quote_name(table)} ORDER BY 1")
            h, n = hashlib.sha256(), 0
            for row in cur.fetchall():
                h.update(repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)).encode())
                n += 1
            out[table] = (n, h.hexdigest())
    return out


def changed_tables(before: dict, after: dict | None) -> list[str]:
    if after is None:
        return ["<database transaction broken>"]
    return sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))


@dataclass
class Tally:
    """Outcome counts over all hostile cases of the run, per kind."""

    tried: Counter = field(default_factory=Counter)
    server_errors: Counter = field(default_factory=Counter)
    state_changes: Counter = field(default_factory=Counter)
    unexpected_status: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)

    def total(self, counter: Counter, prefix: str = "") -> int:
        return sum(v for k, v in counter.items() if k.startswith(prefix))

    def summary(self, prefix: str = "") -> str:
        return (
            f"hostile inputs: {self.total(self.tried, prefix)}, "
            f"500s: {self.total(self.server_errors, prefix)}, "
            f"state changes: {self.total(self.state_changes, prefix)}, "
            f"non-4xx answers: {self.total(self.unexpected_status, prefix)}"
        )


TALLY = Tally()


@dataclass
class Outcome:
    status: int
    changed: list[str]
    body: bytes


def _status_and_body(result) -> tuple[int, bytes]:
    if isinstance(result, tuple):  # (status, message) from a command probe
        return result[0], str(result[1]).encode()
    body = b"" if getattr(result, "streaming", False) else bytes(getattr(result, "content", b""))
    return result.status_code, body


def probe(kind: str, label: str, send: Callable, *args, expect: Iterable[int] = range(400, 500),
          writes: Iterable[str] = (), **kwargs) -> Outcome:
    """Run one hostile case ``send(*args, **kwargs)``; record 500s, answers outside ``expect`` and any
    change to the database (outside ``writes``: the tables a valid request to a write endpoint may change).
    ``send`` returns a response (``status_code``) or a ``(status, message)`` tuple.
    """
    expect = set(expect)
    before = db_fingerprint()
    after = None
    with transaction.atomic():
        result = send(*args, **kwargs)
        status, body = _status_and_body(result)
        try:
            with transaction.atomic():
                after = db_fingerprint()
        # a broken transaction, or a stored row that cannot be read back (a timestamp past year 9999)
        except (DatabaseError, ValueError, OverflowError):
            after = None
        transaction.set_rollback(True)
    changed = [t for t in changed_tables(before, after) if t not in set(writes)]
    TALLY.tried[kind] += 1
    problems = []
    if status >= 500:
        TALLY.server_errors[kind] += 1
        problems.append(f"HTTP {status}")
    elif status not in expect:
        TALLY.unexpected_status[kind] += 1
        problems.append(f"status {status} not in expected")
    if changed:
        TALLY.state_changes[kind] += 1
        problems.append(f"changed {changed}")
    if problems:
        TALLY.failures.append(f"[{kind}] {label[:300]!r}: {'; '.join(problems)}; body={body[:200]!r}")
    return Outcome(status, changed, body)


_MARK: dict = {"failures": 0, "tried": Counter()}


def mark_test_start() -> None:
    """Called before each test so ``assert_clean`` judges only that test's cases."""
    _MARK["failures"], _MARK["tried"] = len(TALLY.failures), TALLY.tried.copy()


def assert_clean(kind_prefix: str, minimum: int) -> None:
    """This test ran at least ``minimum`` cases of these kinds; none answered 500 or off-contract, none
    changed the database."""
    tried = sum(n - _MARK["tried"][k] for k, n in TALLY.tried.items() if k.startswith(kind_prefix))
    mine = [f for f in TALLY.failures[_MARK["failures"]:] if f.startswith(f"[{kind_prefix}")]
    print(f"\n{kind_prefix}: {tried} hostile cases, {len(mine)} misbehaved")
    assert not mine, f"{len(mine)} hostile case(s) misbehaved:\n" + "\n".join(mine[:25])
    assert tried >= minimum, f"only {tried} {kind_prefix} cases ran (want >= {minimum})"


# Payloads reused by several suites.
SQL_INJECTION = [
    "' OR '1'='1",
    "'; DROP TABLE crowd_judgment; --",
    "1; DELETE FROM experiments_experiment WHERE 1=1",
    "\" OR \"\"=\"",
    "admin'--",
    "1 UNION SELECT password FROM auth_user",
]
HTML_INJECTION = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "<svg/onload=alert(1)>",
    "javascript:alert(1)",
    "{{ settings.SECRET_KEY }}",
    "{% debug %}",
]
NASTY_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud7ff\ue000",
    "\u202e\u200b",
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "%00",
    "%2e%2e%2f",
    "A" * 5000,
    *SQL_INJECTION,
    *HTML_INJECTION,
]
