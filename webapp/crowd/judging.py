"""Storing one judgment: the payload contract and the one statement that stores a new judgment.

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


def created_body(v: dict) -> bytes:
    """The JSON body of a 201 answer for the validated judgment ``v`` (what JsonResponse would write)."""
    return json.dumps({"status": "created", "judgment": {
        "uuid": str(v["uuid"]), "position": v["position"], "choice": v["choice"],
        "response_ms": v["response_ms"]}}).encode()


@functools.cache
def _insert_sql() -> str:
    from webapp.crowd.models import Assignment, AssignmentItem, Judgment
    from webapp.experiments.models import Experiment, Trial

    # The chosen stimulus is A exactly when "left was chosen" equals "A was shown on the left".
    return (
        f"INSERT INTO {Judgment._meta.db_table} (assignment_id, item_id, trial_id, chosen_id, chosen_side, "
        "left_stimulus_id, response_ms, client_uuid, created, client_created) "
        "SELECT a.id, i.id, i.trial_id, "
        "CASE WHEN i.left_is_a = %s THEN t.stimulus_a_id ELSE t.stimulus_b_id END, %s, "
        "CASE WHEN i.left_is_a THEN t.stimulus_a_id ELSE t.stimulus_b_id END, %s, %s, %s, %s "
        f"FROM {Assignment._meta.db_table} a "
        f"JOIN {Experiment._meta.db_table} e ON e.id = a.experiment_id "
        f"JOIN {AssignmentItem._meta.db_table} i ON i.assignment_id = a.id AND i.position = %s "
        f"JOIN {Trial._meta.db_table} t ON t.id = i.trial_id "
        "WHERE a.token = %s AND a.state = 'active' AND a.expires_at > %s AND e.status = 'live' "
        "ON CONFLICT DO NOTHING RETURNING 1"
    )


# PostgreSQL types of the statement's parameters, in order (``prepare_insert``).
_PARAM_TYPES = ("boolean", "varchar", "integer", "uuid", "timestamptz", "timestamptz", "integer", "uuid",
                "timestamptz")


def prepare_insert(cursor, name: str) -> None:
    """PostgreSQL: prepare the statement of ``insert_new`` as ``name`` on the cursor's connection, so that
    ``insert_new(..., prepared=name)`` skips parsing and planning it every time."""
    parts = _insert_sql().split("%s")
    assert len(parts) == len(_PARAM_TYPES) + 1
    numbered = parts[0] + "".join(f"${k}{p}" for k, p in enumerate(parts[1:], 1))
    cursor.execute(f"PREPARE {name} ({', '.join(_PARAM_TYPES)}) AS {numbered}")


def insert_new(cursor, connection, token: uuid.UUID, v: dict, now: datetime, prepared: str | None = None
               ) -> bool:
    """Store ``v`` if its assignment (``token``) is open at ``now``, has an item at its position, and
    neither its uuid nor that item is stored yet; True if a row was inserted, False if nothing changed.

    One statement (in autocommit, its own transaction); the unique constraints on ``client_uuid`` and
    ``item`` make concurrent and replayed posts store at most one row. ``cursor`` may be Django's or the
    driver's own; ``connection`` is Django's (for adapting values to its backend); ``prepared`` names the
    statement made by ``prepare_insert`` on that connection.
    """
    ops, token_field = connection.ops, _token_field()
    ct = v["client_time"]
    sql = f"EXECUTE {prepared} ({', '.join(['%s'] * len(_PARAM_TYPES))})" if prepared else _insert_sql()
    cursor.execute(sql, [
        v["choice"] == "left", v["choice"], v["response_ms"], _uuid_value(v["uuid"], connection),
        ops.adapt_datetimefield_value(now), None if ct is None else ops.adapt_datetimefield_value(ct),
        v["position"], token_field.get_db_prep_value(token, connection), ops.adapt_datetimefield_value(now),
    ])
    return cursor.fetchone() is not None


@functools.cache
def _token_field():
    from webapp.crowd.models import Assignment

    return Assignment._meta.get_field("token")


def _uuid_value(value: uuid.UUID, connection):
    from webapp.crowd.models import Judgment

    return Judgment._meta.get_field("client_uuid").get_db_prep_value(value, connection)
