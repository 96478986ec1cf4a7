"""≥50 concurrent participants over real HTTP on PostgreSQL, with replays and retries mixed in."""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

CLIENTS = 50


def _run_participant(base: str, slug: str, seed: int, counters: dict, lock: threading.Lock) -> dict:
    rng = random.Random(seed)
    s = requests.Session()
    r = s.get(f"{base}/p/{slug}/", timeout=30)
    r.raise_for_status()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text).group(1)
    r = s.post(
        f"{base}/p/{slug}/",
        data={"consent": "yes", "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{base}/p/{slug}/"},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 302, r.text[:300]
    token = r.headers["Location"].rstrip("/").split("/")[-1]
    hdr = {"X-Assignment-Token": token}
    state = s.get(f"{base}/a/{token}/state", timeout=30).json()
    made, posts = {}, 0
    for item in state["items"]:
        body = {
            "uuid": str(uuid.uuid4()),
            "position": item["position"],
            "choice": rng.choice(["left", "right"]),
            "response_ms": rng.randint(100, 3000),
            "client_time": None,
        }
        r = s.post(f"{base}/a/{token}/judge", json=body, headers=hdr, timeout=30)
        posts += 1
        assert r.status_code == 201, (r.status_code, r.text)
        made[item["position"]] = body["choice"]
        roll = rng.random()
        if roll < 0.2:  # the ack was "lost": the retry queue resends the same uuid
            r = s.post(f"{base}/a/{token}/judge", json=body, headers=hdr, timeout=30)
            posts += 1
            assert r.status_code == 200 and r.json()["judgment"]["choice"] == body["choice"]
        elif roll < 0.3:  # a second tab / reload re-answers the same slot with a fresh uuid
            again = {**body, "uuid": str(uuid.uuid4()), "choice": rng.choice(["left", "right"])}
            r = s.post(f"{base}/a/{token}/judge", json=again, headers=hdr, timeout=30)
            posts += 1
            assert r.status_code == 200 and r.json()["judgment"]["choice"] == body["choice"]
    r = s.post(f"{base}/a/{token}/complete", headers=hdr, timeout=30)
    assert r.status_code == 200, r.text
    with lock:
        counters["judgments"] += len(made)
        counters["posts"] += posts
    return {"token": token, "made": made}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_fifty_parallel_participants(live_server, transactional_db, experiment_factory, settings):
    if connection.vendor != "postgresql":
        pytest.skip("concurrency test needs PostgreSQL (set DATABASE_URL=postgres://...)")
    from webapp.crowd.models import Assignment, AssignmentItem, Judgment

    settings.CROWD_RATE_LIMIT = 0
    exp = experiment_factory(
        codecs=("jpeg:10,30,50,70,90",),
        trials_per_assignment=8,
        judgments_per_trial=20,
        sentinel_rate=0.25,
        repeat_rate=0.25,
        practice_trials=1,
    )
    counters, lock = {"judgments": 0, "posts": 0}, threading.Lock()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(
            pool.map(lambda i: _run_participant(live_server.url, exp.slug, i, counters, lock), range(CLIENTS))
        )
    wall = time.perf_counter() - t0
    made = sum(len(r["made"]) for r in results)
    stored = Judgment.objects.filter(assignment__experiment=exp).count()
    print(
        f"\n{CLIENTS} clients, {made} distinct judgments in {wall:.1f} s: {made / wall:.1f} judgments/s "
        f"(whole assignments incl. entry, state, replays, completion); {counters['posts']} judge POSTs "
        f"incl. replays = {counters['posts'] / wall:.1f} POST/s; Django live_server on PostgreSQL"
    )
    assert stored == made == counters["judgments"]
    assert Assignment.objects.filter(experiment=exp, state="completed").count() == CLIENTS
    for r in results:  # stored choices are exactly the first answer made per slot
        a = Assignment.objects.get(token=r["token"])
        stored_choices = dict(
            Judgment.objects.filter(assignment=a).values_list("item__position", "chosen_side")
        )
        assert stored_choices == r["made"]
        seen = list(
            AssignmentItem.objects.filter(assignment=a, trial__kind="normal", is_repeat=False).values_list(
                "trial_id", flat=True
            )
        )
        assert len(seen) == len(set(seen)) == 8
    # balancing: 50 × 8 = 400 normal slots over 20 trials -> exactly 20 each
    per_trial = {}
    for t in AssignmentItem.objects.filter(
        assignment__experiment=exp, trial__kind="normal", is_repeat=False
    ).values_list("trial_id", flat=True):
        per_trial[t] = per_trial.get(t, 0) + 1
    assert len(per_trial) == 20 and set(per_trial.values()) == {20}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_simultaneous_duplicates_store_one_judgment(
    live_server, transactional_db, experiment_factory, settings
):
    """The same uuid (and then the same slot with fresh uuids) sent by 12 threads at once: one 201."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    from webapp.crowd.models import Judgment

    settings.CROWD_RATE_LIMIT = 0
    exp = experiment_factory()
    s = requests.Session()
    r = s.get(f"{live_server.url}/p/{exp.slug}/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text).group(1)
    r = s.post(
        f"{live_server.url}/p/{exp.slug}/",
        data={"consent": "yes", "csrfmiddlewaretoken": csrf},
        allow_redirects=False,
    )
    token = r.headers["Location"].rstrip("/").split("/")[-1]
    url, hdr = f"{live_server.url}/a/{token}/judge", {"X-Assignment-Token": token}
    barrier = threading.Barrier(12)

    def send(body):
        barrier.wait()
        return requests.post(url, json=body, headers=hdr, timeout=30).status_code

    same = {"uuid": str(uuid.uuid4()), "position": 0, "choice": "left", "response_ms": 500}
    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(send, [same] * 12))
    assert sorted(codes) == [200] * 11 + [201]
    fresh = [
        {"uuid": str(uuid.uuid4()), "position": 1, "choice": "right", "response_ms": 500} for _ in range(12)
    ]
    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(send, fresh))
    assert sorted(codes) == [200] * 11 + [201]
    assert Judgment.objects.filter(assignment__token=token).count() == 2
