"""The participant hot paths do a fixed number of indexed queries, however big the database is.

A judge POST and taking an assignment are measured with 10 and with 2,000 existing judgments (and 200
existing assignments): the query count must be the same and small, the columns they look up must be
indexed, and the balancing counters (TrialSlots) must equal a full recount after creations, judgments and
expiries.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.web.conftest import enter


@pytest.fixture(autouse=True)
def _no_rate_limit(settings):
    settings.CROWD_RATE_LIMIT = 0
    cache.clear()


def _judge(client, a, position: int, uid: uuid.UUID | None = None):
    body = {"uuid": str(uid or uuid.uuid4()), "position": position, "choice": "right", "response_ms": 700}
    return client.post(f"/a/{a.token}/judge", json.dumps(body), content_type="application/json",
                       headers={"X-Assignment-Token": str(a.token)})


def _grow(exp, judgments: int, assignments: int) -> None:
    """Add ``assignments`` assignments and ``judgments`` judgments to ``exp`` in bulk (one participant)."""
    from webapp.crowd.models import Assignment, AssignmentItem, Judgment, Participant
    from webapp.experiments.models import Trial

    trials = list(Trial.objects.filter(experiment=exp, kind="normal"))
    p = Participant.objects.create(experiment=exp, platform="open", platform_id=uuid.uuid4().hex)
    made = Assignment.objects.bulk_create(
        Assignment(participant=p, experiment=exp, state="completed", expires_at=timezone.now())
        for _ in range(assignments)
    )
    per = -(-judgments // assignments)
    items = AssignmentItem.objects.bulk_create(
        AssignmentItem(assignment=a, position=i, trial=trials[i % len(trials)], left_is_a=True)
        for a in made
        for i in range(per)
    )[:judgments]
    Judgment.objects.bulk_create(
        (Judgment(assignment_id=it.assignment_id, item=it, trial=it.trial, chosen=it.trial.stimulus_b,
                  chosen_side="right", left_stimulus=it.trial.stimulus_a, response_ms=800,
                  client_uuid=uuid.uuid4()) for it in items),
        batch_size=1000,
    )


def _count(fn) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as q:
        fn()
    return len(q.captured_queries), [x["sql"] for x in q.captured_queries]


def test_query_counts_do_not_grow_with_the_database(live_experiment):
    from webapp.crowd.models import Judgment

    exp = live_experiment
    enter(Client(), exp)  # the first entry fills the slot counters (TrialSlots) once
    counts = {}
    for label, judgments, assignments in (("small", 10, 2), ("big", 2_000, 200)):
        _grow(exp, judgments, assignments)
        client = Client()
        enter_n, _ = _count(lambda c=client: enter(c, exp))
        a = enter(Client(), exp)
        new_n, new_sql = _count(lambda c=client, a=a: _judge(c, a, 0))
        uid = uuid.uuid4()
        _judge(client, a, 1, uid)
        replay_n, _ = _count(lambda c=client, a=a, uid=uid: _judge(c, a, 1, uid))
        counts[label] = (enter_n, new_n, replay_n)
    assert Judgment.objects.filter(trial__experiment=exp).count() >= 2_010
    print(f"\nqueries (entry, new judgment, replay): 10 judgments {counts['small']}, "
          f"2,000 judgments {counts['big']}")
    assert counts["small"] == counts["big"]
    # a new judgment: one INSERT ... SELECT (no savepoint: ON CONFLICT DO NOTHING cannot fail on a dupe)
    assert [s.split()[0] for s in new_sql] == ["INSERT"], new_sql
    assert counts["big"][1] == 1 and counts["big"][2] <= 4


def test_new_judgment_is_one_statement_in_autocommit(transactional_db, experiment_factory, settings):
    """As served (autocommit, no outer transaction): one INSERT ... SELECT that is its own transaction; a
    replay costs that statement, the lookup of why nothing was stored and one read of the stored answer."""
    settings.CROWD_RATE_LIMIT = 0
    a = enter(Client(), experiment_factory())
    n, sql = _count(lambda: _judge(Client(), a, 0))
    assert [s.split()[0] for s in sql] == ["INSERT"], sql
    n, sql = _count(lambda: _judge(Client(), a, 0))
    assert [s.split()[0] for s in sql] == ["INSERT", "SELECT", "SELECT"], sql
    assert _judge(Client(), a, 1).status_code == 201


def _indexed(table: str) -> list[list[str]]:
    with connection.cursor() as cur:
        cons = connection.introspection.get_constraints(cur, table)
    return [c["columns"] for c in cons.values() if c["index"] or c["unique"] or c["primary_key"]]


def test_lookup_columns_are_indexed(db):
    from webapp.crowd.models import Assignment, AssignmentItem, Judgment, TrialSlots

    a, i, j = Assignment._meta.db_table, AssignmentItem._meta.db_table, Judgment._meta.db_table
    assert ["token"] in _indexed(a)  # judge/state/... look the assignment up by its token
    assert ["assignment_id", "position"] in _indexed(i)  # the item at a posted position
    assert ["client_uuid"] in _indexed(j)  # replay by uuid (unique: the dedupe)
    assert ["item_id"] in _indexed(j)  # one judgment per slot (unique: the dedupe)
    assert ["trial_id"] in _indexed(TrialSlots._meta.db_table)
    # no index is declared twice on the judgment table (each one costs every INSERT)
    cols = [tuple(c) for c in _indexed(j)]
    assert len(cols) == len(set(cols)), cols


def test_slot_counters_match_a_full_recount(client, live_experiment):
    from webapp.crowd.assign import count_slots, recount_slots
    from webapp.crowd.models import Assignment, TrialSlots

    exp = live_experiment
    made = [enter(Client(), exp) for _ in range(5)]
    for a in made[:3]:  # some judged slots, in assignments that will expire or stay active
        for pos in range(3):
            assert _judge(client, a, pos).status_code == 201
    Assignment.objects.filter(pk__in=[made[0].pk, made[3].pk]).update(
        expires_at=timezone.now() - timedelta(minutes=1))
    enter(Client(), exp)  # expires the two overdue ones, gives back their unjudged slots
    assert Assignment.objects.filter(experiment=exp, state="expired").count() == 2
    assert _judge(client, made[1], 3).status_code == 201
    held = dict(TrialSlots.objects.filter(trial__experiment=exp).values_list("trial_id", "held"))
    assert held == count_slots(exp)
    assert sum(held.values()) > 0
    # a counter that went wrong (e.g. rows deleted by hand) is put right by recount_slots
    TrialSlots.objects.filter(trial__experiment=exp).update(held=99)
    assert recount_slots(exp) == held
    assert dict(TrialSlots.objects.filter(trial__experiment=exp).values_list("trial_id", "held")) == held


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_concurrent_consent_posts_give_one_assignment(live_server, transactional_db, experiment_factory):
    """A double submit (or a client retrying a consent POST still queued) must not take two assignments."""
    import re
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from webapp.crowd.models import Assignment

    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    exp = experiment_factory()  # 6 normal trials, 4 per assignment: a second assignment would be possible
    url = f"{live_server.url}/p/{exp.slug}/"
    s = requests.Session()
    page = s.get(url, timeout=30).text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    entry = re.search(r'name="entry" value="([^"]+)"', page).group(1)  # the identity this form starts
    barrier = threading.Barrier(8)

    def post(_):
        barrier.wait()
        r = requests.post(url, data={"consent": "yes", "csrfmiddlewaretoken": csrf, "entry": entry},
                          cookies=s.cookies, allow_redirects=False, timeout=30)
        return r.status_code, r.headers.get("Location")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert {code for code, _ in answers} == {302}, answers
    assert len({loc for _, loc in answers}) == 1, answers
    assert Assignment.objects.filter(experiment=exp).count() == 1
