"""Storing one judgment (``views.judge``): the payload contract (``validate_judgment`` makes a
``ValidJudgment``), the statement that stores a new judgment and the one that reads back what is stored for
a replay."""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from webapp.crowd.models import SHOWN_ON_SQL, Assignment, AssignmentItem, Judgment
from webapp.experiments.models import Experiment, Trial

SIDES = ("left", "right")
# What the judging page records while a trial is shown (task.js): times the page lost focus (blur or hidden),
# left fullscreen, became smaller than the study's min_viewport, or changed to a pixel ratio it does not
# allow (browser zoom). A judgment without them (an older page, a script) stores NULL.
EVENTS = ("focus_lost", "fullscreen_exits", "too_small", "ratio_changed")
MAX_EVENT_COUNT = 100000


def validate_events(value: object) -> tuple[dict[str, int] | None, str | None]:
    """(every EVENTS key with its count, None) for a valid ``events`` object (missing keys count 0), (None,
    None) for null, else (None, a message)."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        return None, "events: expected an object of counts or null"
    unknown = [k for k in value if k not in EVENTS]
    if unknown:
        return None, f"events: unknown key {unknown[0][:40]!r}; known: {', '.join(EVENTS)}"
    out = {}
    for k in EVENTS:
        v = value.get(k, 0)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_EVENT_COUNT:
            return None, f"events.{k}: expected an integer in [0, {MAX_EVENT_COUNT}]"
        out[k] = v
    return out, None


@dataclass(frozen=True)
class ValidJudgment:
    """A judgment payload that passed ``validate_judgment``: what ``insert_new`` stores."""

    uuid: uuid.UUID
    position: int
    response_ms: int
    choice: str  # one of SIDES
    client_time: datetime | None  # in UTC
    events: dict[str, int] | None  # every EVENTS key with its count, or None when the page sent none


def validate_judgment(data: dict) -> tuple[ValidJudgment | None, str | None]:
    """(the judgment, None) for a valid judgment payload, else (None, a message naming the bad field)."""
    out = {}
    try:
        out["uuid"] = uuid.UUID(str(data["uuid"]))
    except KeyError:
        return None, "missing field: uuid"
    except ValueError:
        return None, "uuid: not a valid UUID"
    for name in ("position", "response_ms"):
        if name not in data:
            return None, f"missing field: {name}"
        v = data[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 2**31 - 1:
            return None, f"{name}: expected a non-negative integer"
        out[name] = v
    if data.get("choice") not in SIDES:
        return None, 'choice: expected "left" or "right"' if "choice" in data else "missing field: choice"
    out["choice"] = data["choice"]
    ct = data.get("client_time")
    out["client_time"] = None
    if ct is not None:
        try:
            parsed = datetime.fromisoformat(str(ct).replace("Z", "+00:00"))
            # in UTC now: an offset that pushes it past year 1..9999 would store a row no one can read back
            parsed = parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except (ValueError, OverflowError):
            return None, "client_time: expected an ISO 8601 timestamp (years 1-9999 in UTC) or null"
        out["client_time"] = parsed
    out["events"], problem = validate_events(data.get("events"))
    if problem:
        return None, problem
    return ValidJudgment(**out), None


def judgment_body(status: str, uid: uuid.UUID, position: int, choice: str, response_ms: int) -> bytes:
    """The JSON body of a 201/200 answer."""
    return json.dumps({"status": status, "judgment": {
        "uuid": str(uid), "position": position, "choice": choice, "response_ms": response_ms}}).encode()


def _tables() -> dict[str, str]:
    return {"J": Judgment._meta.db_table, "I": AssignmentItem._meta.db_table, "A": Assignment._meta.db_table,
            "E": Experiment._meta.db_table, "T": Trial._meta.db_table}


def _insert_into() -> str:
    return (f"INSERT INTO {_tables()['J']} (assignment_id, item_id, trial_id, chosen_id, chosen_side, "
            "left_stimulus_id, response_ms, client_uuid, created, client_created, events) ")


@functools.cache
def _insert_sql() -> str:
    """Store the posted judgment, or nothing: the row exists only if the assignment (by its token) is open
    and has an item at the position; ON CONFLICT DO NOTHING on the unique ``client_uuid`` and ``item`` (the
    assignment's slot) leaves a replay, a copy racing its original or a second answer for a slot unstored.
    RETURNING gives the stored values the 201 answer is made of."""
    t = _tables()
    chosen = SHOWN_ON_SQL.format(i="i", t="t", left="%s")  # the stimulus on the side "left was chosen" says
    left = SHOWN_ON_SQL.format(i="i", t="t", left="TRUE")
    return (
        f"{_insert_into()}"
        f"SELECT a.id, i.id, i.trial_id, {chosen}, %s, {left}, %s, %s, %s, %s, %s "
        f"FROM {t['A']} a JOIN {t['E']} e ON e.id = a.experiment_id "
        f"JOIN {t['I']} i ON i.assignment_id = a.id AND i.position = %s "
        f"JOIN {t['T']} t ON t.id = i.trial_id "
        f"WHERE a.token = %s AND {Assignment.OPEN_SQL.format(a='a', e='e')} "
        "ON CONFLICT DO NOTHING RETURNING client_uuid, chosen_side, response_ms"
    )


@functools.cache
def _stored_sql() -> str:
    t = _tables()
    cols = "j.client_uuid, a.token, i.position, j.chosen_side, j.response_ms"
    # two indexed branches (by uuid; by token and position), not one OR that no index serves
    return (
        f"SELECT {cols} FROM {t['J']} j JOIN {t['I']} i ON i.id = j.item_id "
        f"JOIN {t['A']} a ON a.id = i.assignment_id WHERE j.client_uuid = %s UNION ALL "
        f"SELECT {cols} FROM {t['A']} a JOIN {t['I']} i ON i.assignment_id = a.id AND i.position = %s "
        f"JOIN {t['J']} j ON j.item_id = i.id WHERE a.token = %s"
    )


def insert_new(cursor, connection, token: uuid.UUID, v: ValidJudgment, now: datetime) -> bytes | None:
    """Store ``v`` if its assignment (``token``) is open at ``now``, has an item at its position, and
    neither its uuid nor that item is stored yet: the body of the 201 answer, made from the stored row;
    None if nothing was stored.

    One statement (in autocommit, its own transaction); the unique constraints on ``client_uuid`` and
    ``item`` make concurrent and replayed posts store at most one row. ``connection`` is Django's (for
    adapting values to its backend).
    """
    ops = connection.ops
    ct = v.client_time
    cursor.execute(_insert_sql(), [
        v.choice == "left", v.choice, v.response_ms, _uuid_value(v.uuid, connection),
        ops.adapt_datetimefield_value(now), None if ct is None else ops.adapt_datetimefield_value(ct),
        _events_value(v.events, connection),
        v.position, token_db_value(token, connection), ops.adapt_datetimefield_value(now),
    ])
    row = cursor.fetchone()
    if row is None:
        return None
    uid, choice, ms = row
    return judgment_body("created", uuid.UUID(str(uid)), v.position, choice, ms)


DIFFERENT_USE = b'{"error": "this uuid was already used for a different judgment"}'


def stored_answer(cursor, connection, token: uuid.UUID, v: ValidJudgment) -> tuple[int, bytes] | None:
    """The answer to ``v`` from what is stored: (200, duplicate) for a replay of a stored judgment, (409, ...)
    for its uuid used for another judgment, (200, already_judged) when its slot holds another answer; None
    if nothing is stored under either. The caller has checked that the assignment is open."""
    cursor.execute(_stored_sql(), [_uuid_value(v.uuid, connection), v.position,
                                   token_db_value(token, connection)])
    rows = cursor.fetchall()
    by_uuid = [r for r in rows if uuid.UUID(str(r[0])) == v.uuid]
    if by_uuid:
        _, tok, position, choice = by_uuid[0][:4]
        if uuid.UUID(str(tok)) != token or position != v.position or choice != v.choice:
            return 409, DIFFERENT_USE
        status, row = "duplicate", by_uuid[0]
    elif rows:
        status, row = "already_judged", rows[0]
    else:
        return None
    uid, _, position, choice, ms = row
    return 200, judgment_body(status, uuid.UUID(str(uid)), position, choice, ms)


def token_db_value(value: uuid.UUID, connection):
    """An assignment token as ``connection``'s backend stores it."""
    return Assignment._meta.get_field("token").get_db_prep_value(value, connection)


def _events_value(value: dict | None, connection):
    """The events as ``connection``'s backend stores the JSON column; None stays SQL NULL."""
    return None if value is None else Judgment._meta.get_field("events").get_db_prep_value(value, connection)


def _uuid_value(value: uuid.UUID, connection):
    return Judgment._meta.get_field("client_uuid").get_db_prep_value(value, connection)
