"""The judge POST as served (``webapp.wsgi``: Django's WSGI handler, every request through its request
cycle) answers exactly as the view does under Django's test client: new judgments, replays, bad input,
closed assignments, a wrong host, a foreign origin and a lost database connection. Runs in autocommit
(transactional_db), as served."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.web.conftest import enter
from webapp.harness import served_app as app
from webapp.harness import wsgi_post as post

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="served on PostgreSQL")


def judgment(position, choice="left", uid=None, **extra):
    """A judge POST body."""
    return {"uuid": str(uid or uuid.uuid4()), "position": position, "choice": choice, "response_ms": 640,
            "client_time": "2026-01-01T12:00:00Z", **extra}


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.CROWD_RATE_LIMIT = 0
    cache.clear()


def test_new_judgments_are_stored_as_served_as_the_view_stores_them(transactional_db, experiment_factory):
    from webapp.crowd.models import Judgment

    exp = experiment_factory()
    fast_a, view_a = enter(Client(), exp), enter(Client(), exp)
    wsgi = app()
    for item in fast_a.items.order_by("position"):
        choice = "left" if item.position % 2 else "right"
        body = judgment(item.position, choice)
        status, headers, out = post(wsgi, fast_a.token, body)
        assert status == 201, out
        j = Judgment.objects.get(client_uuid=body["uuid"])
        shown_left = item.left_stimulus()
        assert (j.item_id, j.trial_id, j.chosen_side, j.response_ms) == (item.id, item.trial_id, choice, 640)
        assert j.left_stimulus_id == shown_left.id
        assert j.chosen_id == (shown_left if choice == "left" else item.right_stimulus()).id
        assert j.client_created.isoformat() == "2026-01-01T12:00:00+00:00"
        # the same judgment through the view (Django's test client): same body, same headers
        view_body = judgment(item.position, choice, uid=uuid.uuid4())
        r = Client().post(f"/a/{view_a.token}/judge", json.dumps(view_body), content_type="application/json",
                          headers={"X-Assignment-Token": str(view_a.token)})
        assert r.status_code == 201
        expect = r.content.replace(view_body["uuid"].encode(), body["uuid"].encode())
        assert out == expect
        assert {k.lower() for k in headers} == {k.lower() for k in r.headers}, (headers, dict(r.headers))


def _open(a):
    return a


def _pause(a):
    a.experiment.status = "paused"
    a.experiment.save(update_fields=["status"])
    return a


def _overdue(a):
    a.expires_at = timezone.now() - timedelta(seconds=1)
    a.save(update_fields=["expires_at"])
    return a


CASES = [
    # (name, prepare assignment, request kwargs builder, expected status)
    ("wrong token header", _open, lambda a: dict(body=judgment(0), header=uuid.uuid4()), 403),
    ("form content type", _open, lambda a: dict(body=judgment(0), content_type="text/plain"), 415),
    ("malformed JSON", _open, lambda a: dict(body=b'{"uuid": '), 400),
    ("UTF-16 JSON", _open, lambda a: dict(body=json.dumps(judgment(0)).encode("utf-16")), 400),
    ("a JSON list", _open, lambda a: dict(body=b"[1, 2]"), 400),
    ("missing field", _open, lambda a: dict(body={"uuid": str(uuid.uuid4()), "position": 0}), 400),
    ("bad choice", _open, lambda a: dict(body=judgment(0, choice="both")), 400),
    ("negative response time", _open, lambda a: dict(body=judgment(0, response_ms=-1)), 400),
    ("oversized body", _open, lambda a: dict(body=judgment(0, pad="x" * 10_000)), 413),
    ("no such position", _open, lambda a: dict(body=judgment(99)), 400),
    ("paused study", _pause, lambda a: dict(body=judgment(0)), 403),
    ("overdue assignment", _overdue, lambda a: dict(body=judgment(0)), 403),
    ("unknown token", _open, lambda a: dict(body=judgment(0), path=f"/a/{uuid.uuid4()}/judge"), 404),
    ("upper-case token", _open, lambda a: dict(body=judgment(0), path=f"/a/{str(a.token).upper()}/judge",
                                               header=str(a.token).upper()), 404),
    ("host not allowed", _open, lambda a: dict(body=judgment(0), HTTP_HOST="evil.example"), 400),
    ("foreign origin", _open, lambda a: dict(body=judgment(0), HTTP_ORIGIN="https://evil.example"), 403),
    ("null origin", _open, lambda a: dict(body=judgment(0), HTTP_ORIGIN="null"), 403),
]


@pytest.mark.parametrize("name,prepare,request_kw,expected", CASES, ids=[c[0] for c in CASES])
def test_everything_else_gets_the_views_answer_and_changes_nothing(transactional_db, experiment_factory,
                                                                    name, prepare, request_kw, expected):
    from webapp.crowd.models import Judgment

    a = prepare(enter(Client(), experiment_factory()))
    wsgi = app()
    kw = request_kw(a)
    status, _, out = post(wsgi, a.token, kw.pop("body"), **kw)
    assert status == expected, out
    assert not Judgment.objects.exists()
    if name == "overdue assignment":
        a.refresh_from_db()
        assert a.state == "expired"


def test_replays_get_the_views_answers_and_are_stored_once(transactional_db, experiment_factory):
    from webapp.crowd.models import Judgment

    a = enter(Client(), experiment_factory())
    wsgi = app()
    first = judgment(0, "right")
    assert post(wsgi, a.token, first)[0] == 201
    replays = [  # (body, expected status) -- each also sent through the view for the expected bytes
        (first, 200),  # a lost ack: the page sends it again
        (judgment(0, "left"), 200),  # a second answer for the same slot
        ({**first, "position": 1}, 409),  # the uuid reused for another slot
        ({**first, "choice": "left"}, 409),  # ... or for another answer
    ]
    for body, expected in replays:
        status, headers, out = post(wsgi, a.token, body)
        r = Client().post(f"/a/{a.token}/judge", json.dumps(body), content_type="application/json",
                          headers={"X-Assignment-Token": str(a.token)})
        assert (status, out) == (expected, r.content) == (r.status_code, r.content), (body, out)
        assert {k.lower() for k in headers} == {k.lower() for k in r.headers}
    stored = {"uuid": first["uuid"], "position": 0, "choice": "right", "response_ms": 640}
    assert json.loads(post(wsgi, a.token, judgment(0, "left"))[2]) == {"status": "already_judged",
                                                                       "judgment": stored}
    # a replay to an assignment that is no longer open is a 403, as before
    _pause(a)
    assert post(wsgi, a.token, first)[0] == 403
    assert Judgment.objects.count() == 1


def test_a_lost_database_connection_is_replaced_and_the_judgment_stored_once(transactional_db,
                                                                              experiment_factory):
    """PostgreSQL drops the served thread's persistent connection (a restart): the next request's health
    check (CONN_HEALTH_CHECKS) opens a new one, and the judgment is stored once."""
    from webapp.crowd.models import Judgment

    a = enter(Client(), experiment_factory())
    wsgi = app()
    assert post(wsgi, a.token, judgment(0))[0] == 201
    pid = connection.connection.info.backend_pid
    other = connections.create_connection("default")
    with other.cursor() as cur:  # the server drops this thread's connection (a PostgreSQL restart)
        cur.execute("SELECT pg_terminate_backend(%s)", [pid])
    other.close()
    body = judgment(1)
    status, _, out = post(wsgi, a.token, body)
    assert status == 201, out
    assert Judgment.objects.filter(client_uuid=body["uuid"]).count() == 1
    assert post(wsgi, a.token, judgment(2))[0] == 201


def test_concurrent_copies_of_one_judgment_store_one_row(transactional_db, experiment_factory):
    from webapp.crowd.models import Judgment

    a = enter(Client(), experiment_factory())
    wsgi = app()
    body, answers = judgment(0), []
    barrier = threading.Barrier(8)

    def send():
        barrier.wait()
        try:
            answers.append(post(wsgi, a.token, body))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(s for s, _, _ in answers)
    assert statuses == [200] * 7 + [201], statuses
    assert {json.loads(out)["judgment"]["uuid"] for _, _, out in answers} == {body["uuid"]}
    assert Judgment.objects.count() == 1


def test_https_answers_carry_hsts_and_plain_http_is_redirected(transactional_db, experiment_factory,
                                                                 settings):
    a = enter(Client(), experiment_factory())
    settings.SECURE_HSTS_SECONDS = 3600
    wsgi = app()
    status, headers, _ = post(wsgi, a.token, judgment(0), HTTP_X_FORWARDED_PROTO="https",
                              HTTP_ORIGIN="https://testserver")  # the page's own origin
    assert status == 201 and headers["Strict-Transport-Security"].startswith("max-age=3600")
    settings.SECURE_SSL_REDIRECT = True  # plain HTTP is redirected, not answered
    assert post(app(), a.token, judgment(1))[0] == 301  # (middleware reads its settings when made)


def test_the_judge_post_does_not_read_the_session(transactional_db, experiment_factory):
    """The token authorises; the session table is never read, even with a session cookie sent."""
    a = enter(client := Client(), experiment_factory())
    cookie = client.cookies["sessionid"].value
    with CaptureQueriesContext(connection) as q:
        status, _, _ = post(app(), a.token, judgment(0), HTTP_COOKIE=f"sessionid={cookie}")
    assert status == 201
    assert [x["sql"].split()[0] for x in q.captured_queries] == ["INSERT"], q.captured_queries


def test_fuzzed_payloads_as_served_never_500_and_store_exactly_the_accepted(transactional_db,
                                                                           experiment_factory):
    """Hypothesis: valid, replayed and malformed judgments (bad fields from the security fuzz suite) through
    the served application (autocommit). Never a 5xx; a 4xx changes nothing; every 201 is stored once with
    what was sent, and nothing else is stored."""
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    from tests.web.security.test_fuzz_crowd import JSON_SCALARS, bad_field_values
    from webapp.crowd.judging import SIDES
    from webapp.crowd.models import Judgment

    a = enter(Client(), experiment_factory())
    n_items = a.items.count()
    wsgi = app()
    bad = bad_field_values(n_items)
    accepted: dict[str, tuple[int, str]] = {}
    sent: list[dict] = []
    statuses: list[int] = []

    @hsettings(max_examples=120, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=st.data(), kind=st.sampled_from(["valid", "replay", "bad"]), extra=st.dictionaries(
        st.sampled_from(["pad", "id", "trial", "__proto__"]), JSON_SCALARS, max_size=2))
    def one(data, kind, extra):
        if kind == "replay" and sent:
            body = data.draw(st.sampled_from(sent))
        else:
            body = {**judgment(data.draw(st.integers(0, n_items - 1)), data.draw(st.sampled_from(SIDES))),
                    **extra}
            if kind == "bad":
                field = data.draw(st.sampled_from(sorted(bad)))
                body[field] = data.draw(bad[field])
        before = Judgment.objects.count()
        status, _, out = post(wsgi, a.token, json.dumps(body, allow_nan=True).encode())
        statuses.append(status)
        assert status < 500, (status, body, out)
        if status == 201:
            accepted[body["uuid"]] = (body["position"], body["choice"])
            sent.append(body)
        assert Judgment.objects.count() == before + (status == 201), (status, body)

    one()
    stored = {str(u): (p, c) for u, p, c in Judgment.objects.values_list("client_uuid", "item__position",
                                                                         "chosen_side")}
    print(f"\nserved fuzz: {len(statuses)} posts, answers {sorted(set(statuses))}, {len(stored)} stored")
    assert stored == accepted
    assert {201, 200} <= set(statuses) and any(400 <= s < 500 for s in statuses)
