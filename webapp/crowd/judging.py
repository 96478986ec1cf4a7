"""Storing one judgment: the payload contract, the statement that stores a new judgment and the one that
reads back what is stored for a replay.

Shared by the judge view (``views.judge``) and the WSGI shortcut (``fastpath.JudgeFastPath``), so what a
judgment is, how it is validated and how it is stored is written once.
"""

from __future__ import annotations

import functools
import json
import uuid
from datetime import UTC, datetime

SIDES = ("left", "right")


def validate_judgment(data: dict) -> tuple[dict | None, str | None]:
    """(clean values, None) for a valid judgment payload, else (None, a message naming the bad field)."""
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
    return out, None


def judgment_body(status: str, uid, position: int, choice: str, response_ms: int) -> bytes:
    """The JSON body of a 201/200 answer (what the view's JsonResponse writes)."""
    return json.dumps({"status": status, "judgment": {
        "uuid": str(uid), "position": position, "choice": choice, "response_ms": response_ms}}).encode()


def created_body(v: dict) -> bytes:
    """The body of the 201 answer for the newly stored judgment ``v``."""
    return judgment_body("created", v["uuid"], v["position"], v["choice"], v["response_ms"])


def _tables() -> dict[str, str]:
    from webapp.crowd.models import Assignment, AssignmentItem, Judgment
    from webapp.experiments.models import Experiment, Trial

    return {"J": Judgment._meta.db_table, "I": AssignmentItem._meta.db_table, "A": Assignment._meta.db_table,
            "E": Experiment._meta.db_table, "T": Trial._meta.db_table}


def _insert_into() -> str:
    return (f"INSERT INTO {_tables()['J']} (assignment_id, item_id, trial_id, chosen_id, chosen_side, "
            "left_stimulus_id, response_ms, client_uuid, created, client_created) ")


def _select_template(v: dict[str, str]) -> str:
    """The row a new judgment stores, with the posted values as SQL expressions ``v``: no row unless its
    assignment is open and has an item at the position. One template, so the one-row statement and the
    batched one check and store exactly the same."""
    t = _tables()
    # The chosen stimulus is A exactly when "left was chosen" equals "A was shown on the left".
    return (
        "SELECT a.id, i.id, i.trial_id, "
        f"CASE WHEN i.left_is_a = {v['left']} THEN t.stimulus_a_id ELSE t.stimulus_b_id END, {v['side']}, "
        f"CASE WHEN i.left_is_a THEN t.stimulus_a_id ELSE t.stimulus_b_id END, {v['ms']}, {v['uuid']}, "
        f"{v['now']}, {v['client_time']} "
        f"FROM {t['A']} a JOIN {t['E']} e ON e.id = a.experiment_id "
        f"JOIN {t['I']} i ON i.assignment_id = a.id AND i.position = {v['position']} "
        f"JOIN {t['T']} t ON t.id = i.trial_id "
        f"WHERE a.token = {v['token']} AND a.state = 'active' AND a.expires_at > {v['open_at']} "
        "AND e.status = 'live'"
    )


@functools.cache
def _insert_sql() -> str:
    names = ("left", "side", "ms", "uuid", "now", "client_time", "position", "token", "open_at")
    select = _select_template(dict.fromkeys(names, "%s"))
    return f"{_insert_into()}{select} ON CONFLICT DO NOTHING RETURNING 1"


# the columns of one posted judgment in the batched statement, in order, with their PostgreSQL types
_BATCH_COLUMNS = (("token", "uuid"), ("position", "integer"), ("side", "varchar"), ("ms", "integer"),
                  ("uuid", "uuid"), ("client_time", "timestamptz"))


@functools.cache
def _insert_batch_sql() -> str:
    names = ", ".join(name for name, _ in _BATCH_COLUMNS)
    arrays = ", ".join(f"%s::{typ}[]" for _, typ in _BATCH_COLUMNS)
    values = {name: f"v.{name}" for name, _ in _BATCH_COLUMNS}
    values.update(left="(v.side = 'left')", now="%s", open_at="%s")
    # OFFSET 0 keeps the row's lookup a subquery run per posted row (by token: a unique index); flattened,
    # the planner may instead scan every open assignment and match the tokens afterwards.
    return (f"{_insert_into()}SELECT x.* FROM unnest({arrays}) AS v({names}) CROSS JOIN LATERAL "
            f"({_select_template(values)} OFFSET 0) AS x ON CONFLICT DO NOTHING RETURNING client_uuid")


@functools.cache
def _stored_sql() -> str:
    t = _tables()
    cols = "j.client_uuid, a.token, i.position, j.chosen_side, j.response_ms, a.state, a.expires_at, e.status"
    # two indexed branches (by uuid; by token and position), not one OR that no index serves
    return (
        f"SELECT {cols} FROM {t['J']} j JOIN {t['I']} i ON i.id = j.item_id "
        f"JOIN {t['A']} a ON a.id = i.assignment_id JOIN {t['E']} e ON e.id = a.experiment_id "
        "WHERE j.client_uuid = %s UNION ALL "
        f"SELECT {cols} FROM {t['A']} a JOIN {t['I']} i ON i.assignment_id = a.id AND i.position = %s "
        f"JOIN {t['J']} j ON j.item_id = i.id JOIN {t['E']} e ON e.id = a.experiment_id WHERE a.token = %s"
    )


# name -> (statement, PostgreSQL types of its parameters in order), for prepare_statements: the statements
# the judge shortcut runs (the view's one-row insert is not among them)
_STATEMENTS = {
    "crowd_judge_stored": (_stored_sql, ("uuid", "integer", "uuid")),
    "crowd_judge_insert_batch": (_insert_batch_sql,
                                 (*(f"{typ}[]" for _, typ in _BATCH_COLUMNS), "timestamptz", "timestamptz")),
}


def prepare_statements(cursor) -> None:
    """PostgreSQL: prepare the statements of ``insert_batch`` and ``stored_answer`` on the cursor's
    connection, so that calls with ``prepared=True`` skip parsing and planning them every time."""
    # A custom plan for every EXECUTE would re-plan the batched statement each time (its estimate depends
    # on the arrays' length, so PostgreSQL never settles on the generic plan); the plans do not depend on
    # the values. Only prepared statements follow this setting, and Django prepares none of its own.
    cursor.execute("SET plan_cache_mode = force_generic_plan")
    for name, (sql, types) in _STATEMENTS.items():
        parts = sql().split("%s")
        assert len(parts) == len(types) + 1
        numbered = parts[0] + "".join(f"${k}{p}" for k, p in enumerate(parts[1:], 1))
        cursor.execute(f"PREPARE {name} ({', '.join(types)}) AS {numbered}")


def _execute(cursor, name: str, params: list, prepared: bool) -> None:
    sql, types = _STATEMENTS[name]
    # an array is sent as ARRAY[...] of text, which EXECUTE does not convert by itself
    marks = ", ".join("%s::" + typ if typ.endswith("[]") else "%s" for typ in types)
    cursor.execute(f"EXECUTE {name} ({marks})" if prepared else sql(), params)


def insert_new(cursor, connection, token: uuid.UUID, v: dict, now: datetime) -> bool:
    """Store ``v`` if its assignment (``token``) is open at ``now``, has an item at its position, and
    neither its uuid nor that item is stored yet; True if a row was inserted, False if nothing changed.

    One statement (in autocommit, its own transaction); the unique constraints on ``client_uuid`` and
    ``item`` make concurrent and replayed posts store at most one row. ``cursor`` may be Django's or the
    driver's own; ``connection`` is Django's (for adapting values to its backend).
    """
    ops = connection.ops
    ct = v["client_time"]
    cursor.execute(_insert_sql(), [
        v["choice"] == "left", v["choice"], v["response_ms"], _uuid_value(v["uuid"], connection),
        ops.adapt_datetimefield_value(now), None if ct is None else ops.adapt_datetimefield_value(ct),
        v["position"], token_db_value(token, connection), ops.adapt_datetimefield_value(now),
    ])
    return cursor.fetchone() is not None


def insert_batch(cursor, connection, rows: list[tuple[uuid.UUID, dict]], now: datetime,
                 prepared: bool = False) -> set[uuid.UUID]:
    """PostgreSQL: ``insert_new`` for many judgments (``rows`` of (token, clean values)) in one statement and
    one commit; the uuids of the rows inserted. A row is stored under exactly the conditions
    ``insert_new`` stores it; rows that share a uuid or a slot with an earlier row of ``rows`` must be left
    out by the caller (the statement could not tell which of them stored what)."""
    ops = connection.ops
    cols = list(zip(*((str(token), v["position"], v["choice"], v["response_ms"], str(v["uuid"]),
                       None if v["client_time"] is None else ops.adapt_datetimefield_value(v["client_time"]))
                      for token, v in rows)))
    at = ops.adapt_datetimefield_value(now)
    _execute(cursor, "crowd_judge_insert_batch", [*(list(c) for c in cols), at, at], prepared)
    return {uuid.UUID(str(r[0])) for r in cursor.fetchall()}


DIFFERENT_USE = b'{"error": "this uuid was already used for a different judgment"}'


def stored_answer(cursor, connection, token: uuid.UUID, v: dict, open_at: datetime | None = None,
                  prepared: bool = False) -> tuple[int, bytes] | None:
    """The answer to ``v`` from what is stored: (200, duplicate) for a replay of a stored judgment, (409, ...)
    for its uuid used for another judgment, (200, already_judged) when its slot holds another answer; None
    if nothing is stored under either. With ``open_at``, only a 200 for an assignment open at that time is
    given (None otherwise), as the view checks the assignment before it answers."""
    _execute(cursor, "crowd_judge_stored", [_uuid_value(v["uuid"], connection), v["position"],
                                            token_db_value(token, connection)], prepared)
    rows = cursor.fetchall()
    by_uuid = [r for r in rows if uuid.UUID(str(r[0])) == v["uuid"]]
    if by_uuid:
        _, tok, position, choice = by_uuid[0][:4]
        if uuid.UUID(str(tok)) != token or position != v["position"] or choice != v["choice"]:
            return None if open_at else (409, DIFFERENT_USE)
        status, row = "duplicate", by_uuid[0]
    elif rows:
        status, row = "already_judged", rows[0]
    else:
        return None
    uid, tok, position, choice, ms, state, expires_at, study = row
    if open_at and not (state == "active" and study == "live" and expires_at > open_at):
        return None
    return 200, judgment_body(status, uuid.UUID(str(uid)), position, choice, ms)


def token_db_value(value: uuid.UUID, connection):
    """An assignment token as ``connection``'s backend stores it."""
    from webapp.crowd.models import Assignment

    return Assignment._meta.get_field("token").get_db_prep_value(value, connection)


def _uuid_value(value: uuid.UUID, connection):
    from webapp.crowd.models import Judgment

    return Judgment._meta.get_field("client_uuid").get_db_prep_value(value, connection)
