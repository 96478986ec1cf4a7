"""Group commit: the judgments that a server process's threads post at the same time are stored with one
statement and one commit (webapp/crowd/groupcommit.py, used by webapp/crowd/fastpath.py), and each post
still gets exactly the answer it would get alone.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from tests.web.conftest import enter
from tests.web.reliability.shortcut import app, judgment, post
from webapp.crowd.groupcommit import GroupCommit
from webapp.crowd.judging import validate_judgment


def _wait_until(predicate, timeout: float = 10.0) -> None:
    stop = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < stop, "timed out"
        time.sleep(0.001)


def _gated(then=lambda n, items: list(items), **kw):
    """A GroupCommit whose flush holds its first call until ``gate`` is set and answers every call with
    ``then(call number, items)``; returns (group, calls: the batches flush saw, gate)."""
    calls: list[list] = []
    gate = threading.Event()

    def flush(items):
        calls.append(list(items))
        if len(calls) == 1:
            gate.wait(10)
        return then(len(calls), items)

    return GroupCommit(flush, **kw), calls, gate


def _submit_all(group, items, out: dict) -> list[threading.Thread]:
    def run(x):
        try:
            out[x] = group.submit(x)
        except Exception as exc:  # noqa: BLE001 (the test looks at what each caller got)
            out[x] = exc

    threads = [threading.Thread(target=run, args=(x,)) for x in items]
    for t in threads:
        t.start()
    return threads


def test_submits_that_arrive_during_a_flush_go_together_in_the_next_one():
    group, calls, gate = _gated(lambda n, items: [x * 10 for x in items], max_batch=4)
    out: dict = {}
    first = _submit_all(group, [1], out)
    _wait_until(lambda: calls)  # 1 is being flushed alone
    rest = _submit_all(group, range(2, 8), out)
    _wait_until(lambda: len(group._queue) == 6)  # six more wait meanwhile
    gate.set()
    for t in first + rest:
        t.join(10)
    assert out == {x: x * 10 for x in range(1, 8)}  # every caller got its own result
    assert calls[0] == [1]
    assert sorted(sum(calls[1:], [])) == list(range(2, 8))
    assert all(len(c) <= 4 for c in calls) and len(calls) == 3  # max_batch 4: [1], 4 items, 2 items
    assert (group.batches, group.items) == (3, 7)


def test_one_caller_at_a_time_is_one_item_per_flush():
    seen = []
    group = GroupCommit(lambda items: (seen.append(list(items)), [x + 1 for x in items])[1])
    assert [group.submit(x) for x in range(5)] == [1, 2, 3, 4, 5]
    assert seen == [[0], [1], [2], [3], [4]]


def test_a_failing_flush_raises_in_every_caller_of_its_batch_and_the_next_batch_runs():
    def then(n, items):
        if n == 2:
            raise RuntimeError("database went away")
        return [0] if n == 1 else list(items)

    group, calls, gate = _gated(then)
    out: dict = {}
    threads = _submit_all(group, [1], out)
    _wait_until(lambda: calls)
    threads += _submit_all(group, [2, 3, 4], out)
    _wait_until(lambda: len(group._queue) == 3)
    gate.set()
    for t in threads:
        t.join(10)
    assert out[1] == 0
    assert all(isinstance(out[x], RuntimeError) for x in (2, 3, 4))
    assert group.submit(5) == 5  # not stuck
    wrong = GroupCommit(lambda items: [])
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        wrong.submit(1)


def test_linger_lets_a_leader_with_others_queued_wait_for_more():
    group, calls, gate = _gated(linger=0.5)
    out: dict = {}
    threads = _submit_all(group, [1], out)  # alone: flushed at once, no linger
    _wait_until(lambda: calls)
    threads += _submit_all(group, [2], out)
    _wait_until(lambda: len(group._queue) == 1)
    threads += _submit_all(group, [3], out)
    _wait_until(lambda: len(group._queue) == 2)
    gate.set()  # 2 leads next, finds 3 queued behind it, and lingers ...
    time.sleep(0.15)
    threads += _submit_all(group, [4], out)  # ... so 4, arriving meanwhile, joins that batch
    for t in threads:
        t.join(10)
    assert out == {1: 1, 2: 2, 3: 3, 4: 4}
    assert calls == [[1], [2, 3, 4]]


# ---------------------------------------------------------------- the judge shortcut's batches (PostgreSQL)

pg = pytest.mark.skipif(connection.vendor != "postgresql", reason="the shortcut is PostgreSQL-only")


@pytest.fixture
def _fast(settings):
    settings.CROWD_RATE_LIMIT = 0
    settings.CROWD_JUDGE_FASTPATH = True


def _row(token, body):
    v, err = validate_judgment(body)
    assert err is None
    return uuid.UUID(str(token)), v


@pg
def test_one_batch_answers_each_post_as_if_it_came_alone(transactional_db, experiment_factory, _fast):
    from webapp.crowd.models import Judgment

    exp = experiment_factory()
    a, b, closed = (enter(Client(), exp) for _ in range(3))
    closed.state = "expired"
    closed.save()
    stored = judgment(3, "right")
    wsgi, _ = app()
    assert post(wsgi, b.token, stored)[0] == 201
    new_a, copy_a, other_uuid_same_slot = judgment(0, "left"), None, judgment(0, "right")
    copy_a = dict(new_a)
    new_b, reused = judgment(1, "right"), judgment(2, "left", uid=stored["uuid"])
    rows = [_row(a.token, new_a), _row(b.token, new_b), _row(a.token, copy_a),
            _row(a.token, other_uuid_same_slot), _row(closed.token, judgment(0)), _row(b.token, stored),
            _row(b.token, reused), _row(a.token, judgment(99))]
    answers = app()[0]._flush(rows)
    status = [None if x is None else (x[0], json.loads(x[1])["status"]) for x in answers]
    assert status == [(201, "created"), (201, "created"), (200, "duplicate"), (200, "already_judged"),
                      None, (200, "duplicate"), None, None]  # None: Django answers (403, 409, 400)
    assert json.loads(answers[3][1])["judgment"]["uuid"] == new_a["uuid"]  # the slot's stored answer
    rows_a = Judgment.objects.filter(assignment=a)
    assert [(str(j.client_uuid), j.chosen_side) for j in rows_a] == [(new_a["uuid"], "left")]
    assert Judgment.objects.count() == 3  # stored, new_a, new_b
    assert Judgment.objects.get(client_uuid=new_a["uuid"]).created == \
        Judgment.objects.get(client_uuid=new_b["uuid"]).created  # one statement: one commit time


@pg
def test_a_batch_stores_what_each_item_determines(transactional_db, experiment_factory, _fast):
    """Each row of a many-row batch holds the item's trial, its left stimulus, and the stimulus shown on
    the chosen side, as the view's one-row statement stores them (both sides, both left/right orders)."""
    from webapp.crowd.models import Judgment

    exp = experiment_factory()
    a = enter(Client(), exp)
    items = list(a.items.select_related("trial").order_by("position"))
    bodies = {i.position: judgment(i.position, "left" if i.position % 2 else "right") for i in items}
    answers = app()[0]._flush([_row(a.token, b) for b in bodies.values()])
    assert [x[0] for x in answers] == [201] * len(items)
    assert {i.left_is_a for i in items} == {True, False}
    for i in items:
        j = Judgment.objects.get(item=i)
        side = bodies[i.position]["choice"]
        shown = i.left_stimulus() if side == "left" else i.right_stimulus()
        assert (str(j.client_uuid), j.assignment_id, j.trial_id, j.chosen_side) == \
            (bodies[i.position]["uuid"], a.id, i.trial_id, side)
        assert (j.chosen_id, j.left_stimulus_id) == (shown.id, i.left_stimulus().id)
        assert (j.response_ms, j.client_created.isoformat()) == (640, "2026-01-01T12:00:00+00:00")


@pg
def test_a_batch_that_hits_a_database_error_is_handed_on_whole_and_stores_nothing(transactional_db,
                                                                                  experiment_factory, _fast):
    from webapp.crowd.models import Judgment

    a = enter(Client(), experiment_factory())
    fast, _ = app()
    assert fast._flush([_row(a.token, judgment(0))])[0][0] == 201
    pid = fast.db.connection.info.backend_pid
    other = connections.create_connection("default")
    with other.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", [pid])
    other.close()
    rows = [_row(a.token, judgment(p)) for p in (1, 2, 3)]
    assert fast._flush(rows) == [None, None, None]
    assert Judgment.objects.count() == 1
    assert [x[0] for x in fast._flush(rows)] == [201, 201, 201]  # reconnected
    assert Judgment.objects.count() == 4


@pg
def test_concurrent_posts_share_commits_and_each_is_stored_once(transactional_db, experiment_factory, _fast):
    from webapp.crowd.models import Judgment

    exp = experiment_factory(trials_per_assignment=6)
    assignments = [enter(Client(), exp) for _ in range(4)]
    jobs = [(a, judgment(i.position)) for a in assignments for i in a.items.all()]
    jobs += [(a, dict(body)) for a, body in jobs[::3]]  # copies of a third of them, as retries
    wsgi, inner = app()
    barrier = threading.Barrier(len(jobs))
    answers = []

    def send(a, body):
        barrier.wait()
        try:
            answers.append((body["uuid"], post(wsgi, a.token, body)[0]))
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    distinct = {body["uuid"] for _, body in jobs}
    created = sorted(u for u, s in answers if s == 201)
    assert created == sorted(distinct)  # each distinct judgment created once ...
    assert sorted(s for _, s in answers).count(200) == len(jobs) - len(distinct)  # ... the copies replays
    assert inner.calls == 0
    stored = Judgment.objects.filter(assignment__in=assignments)
    assert sorted(str(j.client_uuid) for j in stored) == sorted(distinct)
    commits = stored.values("created").distinct().count()
    assert wsgi.group.batches < len(jobs) and commits < len(distinct), (wsgi.group.batches, commits)


@pg
def test_an_assignment_closed_between_batches_is_not_written_to(transactional_db, experiment_factory, _fast):
    from webapp.crowd.models import Assignment, Judgment

    a = enter(Client(), experiment_factory())
    Assignment.objects.filter(pk=a.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert app()[0]._flush([_row(a.token, judgment(0))]) == [None]
    assert Judgment.objects.count() == 0
