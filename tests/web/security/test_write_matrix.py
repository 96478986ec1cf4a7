"""Every write endpoint against every assignment and study state: only an open assignment is written.

Endpoints: consent (``POST /p/<slug>/``), ``judge``, ``device``, ``complete``. States: the assignment
active, completed, expired (stored, or overdue and found so by the request), or its study paused, closed
or back to draft. A refused write answers 403 with the same reason for every endpoint and changes no row
(the overdue assignment is only marked expired); ``complete`` on a completed assignment answers its code
again and changes nothing.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.web.conftest import enter

ENDPOINTS = ("judge", "device", "complete")
CLOSED = ("completed", "expired", "overdue", "paused", "closed", "draft")


def post(client, a, view: str, body: dict | None = None):
    return client.post(f"/a/{a.token}/{view}", json.dumps(body or {}), content_type="application/json",
                       headers={"X-Assignment-Token": str(a.token)})


def judgment(position: int) -> dict:
    return {"uuid": str(uuid.uuid4()), "position": position, "choice": "left", "response_ms": 900}


BODIES = {"judge": lambda a: judgment(a.items.filter(judgment__isnull=True).order_by("position")
                                      .values_list("position", flat=True).first() or 0),
          "device": lambda a: {"dpr": 3, "viewport": [1, 1]},
          "complete": lambda a: {}}


def rows(a) -> dict:
    """The rows a write to ``a`` could change."""
    from webapp.crowd.models import Assignment, AssignmentItem, Judgment, Participant

    return {"assignment": Assignment.objects.filter(pk=a.pk).values().get(),
            "items": list(AssignmentItem.objects.filter(assignment=a).order_by("pk").values()),
            "judgments": list(Judgment.objects.order_by("pk").values()),
            "participants": Participant.objects.count()}


def close(exp, a, how: str) -> None:
    from webapp.crowd.models import Assignment

    if how in ("paused", "closed", "draft"):
        exp.status = how
        exp.save(update_fields=["status"])
    elif how == "completed":
        Assignment.objects.filter(pk=a.pk).update(state="completed", completed_at=timezone.now(),
                                                  completion_code="CODE-123")
    else:
        past = timezone.now() - timedelta(seconds=1)
        Assignment.objects.filter(pk=a.pk).update(expires_at=past, **({"state": "expired"}
                                                                        if how == "expired" else {}))


def judge_all_but_one(client, a) -> None:
    for item in a.items.order_by("position")[1:]:
        assert post(client, a, "judge", judgment(item.position)).status_code == 201


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_active_assignment_is_written(client, live_experiment, endpoint):
    a = enter(client, live_experiment)
    if endpoint == "complete":
        judge_all_but_one(client, a)
        assert post(client, a, "judge", judgment(0)).status_code == 201
    before = rows(a)
    r = post(client, a, endpoint, BODIES[endpoint](a))
    assert r.status_code in (200, 201), r.content
    assert rows(a) != before


@pytest.mark.parametrize("how", CLOSED)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_closed_assignment_is_never_written(client, live_experiment, endpoint, how):
    a = enter(client, live_experiment)
    judge_all_but_one(client, a)
    close(live_experiment, a, how)
    a.refresh_from_db()
    before = rows(a)
    r = post(client, a, endpoint, BODIES[endpoint](a))
    after = rows(a)
    if how == "overdue":  # found overdue by this request: marked expired, nothing else
        assert after["assignment"].pop("state") == "expired"
        before["assignment"].pop("state")
    assert after == before, (endpoint, how)
    if endpoint == "complete" and how == "completed":
        assert r.status_code == 200 and r.json()["code"] == "CODE-123"
        return
    assert r.status_code == 403, (endpoint, how, r.status_code, r.content)
    reason = r.json()["error"]
    assert reason == (f"the study is {how}" if how in ("paused", "closed", "draft")
                      else f"this assignment is {'expired' if how == 'overdue' else how}")


@pytest.mark.parametrize("status", ["paused", "closed", "draft"])
def test_consent_to_a_study_that_is_not_live_creates_nothing(client, live_experiment, status):
    from webapp.crowd.models import Assignment, Participant

    live_experiment.status = status
    live_experiment.save(update_fields=["status"])
    r = client.post(f"/p/{live_experiment.slug}/", {"consent": "yes"})
    assert r.status_code < 500 and r.status_code != 302
    assert not Participant.objects.exists() and not Assignment.objects.exists()
