"""Faults under load: PostgreSQL restarts and a server worker is SIGKILLed while participants judge.

The production server (``make serve-prod``: granian, DEBUG=0, its default workers and threads, persistent
connections with health checks) serves the pytest test database; 60 simulated participants
(``webapp.simcrowd.client``, the simulated crowd's HTTP participant: consent, the task page and its state,
every trial's images, judgments with think times, each judgment re-sent with the same uuid after a
timeout, a connection error or a 5xx with doubling backoff as task.js does, the images, state and
completion retried as the page retries them, 5 % replays, 5 % reloads), each followed by a new one when it
finishes, judge for 20 s once all 60 have entered. 5 s into that, PostgreSQL is restarted with

    pg_ctlcluster --skip-systemctl-redirect <version> <cluster> restart

(the cluster serving DATABASES' port, found with pg_lsclusters); 6 s after the restart began one worker
(not the main process) gets SIGKILL and granian starts another. Afterwards every acknowledged judgment is
stored exactly once with the acknowledged answer, none was given up without an ack, no participant that
held an assignment stopped for an error, and judging went on after both faults without anyone restarting
anything.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests
from django.db import connection, connections

from learning.observers import Observer, parse_observer
from webapp import harness
from webapp.simcrowd.client import Behaviour, RunStats, SimulatedParticipant

ROOT = Path(__file__).resolve().parents[3]


def _cluster(port: int) -> tuple[str, str] | None:
    """(version, name) of the local cluster listening on ``port``, from pg_lsclusters."""
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] == str(port) and f[3] == "online":
            return f[0], f[1]
    return None


def _restart_command(settings_dict: dict) -> list[str]:
    """The restart command, or pytest.skip with the reason it cannot run here."""
    if connection.vendor != "postgresql":
        pytest.skip("fault test needs PostgreSQL (set DATABASE_URL=postgres://...)")
    if not shutil.which("pg_ctlcluster") or not shutil.which("pg_lsclusters"):
        pytest.skip("pg_ctlcluster/pg_lsclusters not installed (Debian postgresql-common)")
    if settings_dict.get("HOST") not in ("127.0.0.1", "localhost", "::1", "", None):
        pytest.skip(f"PostgreSQL at {settings_dict['HOST']} is not on this machine")
    if os.geteuid() != 0:
        pytest.skip("restarting the PostgreSQL cluster needs root (pg_ctlcluster as the cluster owner)")
    cluster = _cluster(int(settings_dict.get("PORT") or 5432))
    if cluster is None:
        pytest.skip("no online local cluster listens on the configured port (pg_lsclusters)")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart"]


class _Scripted:
    """Stands in for a participant's ``requests.Session``: answers each request with the next step of its
    script, a status code (with a body) or an exception to raise, and notes what was sent."""

    def __init__(self, *script: int | tuple[int, bytes] | Exception) -> None:
        self.script, self.sent, self.headers = list(script), [], {}

    def _next(self, method: str, url: str, body: dict | None) -> requests.Response:
        self.sent.append((method, url, body))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        r = requests.Response()
        r.status_code, r._content = step if isinstance(step, tuple) else (step, b"")
        r.url = url
        return r

    def get(self, url: str, **kw) -> requests.Response:
        return self._next("GET", url, None)

    def post(self, url: str, json: dict | None = None, **kw) -> requests.Response:
        return self._next("POST", url, json)

    def close(self) -> None:
        pass


def test_a_simulated_participant_retries_through_5xx_and_dropped_connections(monkeypatch):
    """What a database restart or a killed worker does to a request (500/503, a reset connection, a
    timeout): the simulated participant sends the judgment again with the same uuid, and the images, the
    state and the completion again too, with doubling waits, as task.js does."""
    import webapp.simcrowd.client as simclient

    waits: list[float] = []
    monkeypatch.setattr(simclient.time, "sleep", waits.append)
    observer = Observer(rng=np.random.default_rng(0))
    p = SimulatedParticipant("http://127.0.0.1:9", "s", "open", 0, "run", observer,
                             parse_observer("psnr"), RunStats(), threading.Event(),
                             on_enter=lambda token: None, behaviour=Behaviour(max_attempts=6))
    p.token, p.urls = "tok", {"judge": "/a/tok/judge", "complete": "/a/tok/complete"}
    body = {"uuid": "u-1", "position": 3, "choice": "left", "response_ms": 900, "client_time": None}
    ack = b'{"judgment": {"uuid": "u-1", "choice": "left"}}'
    p.http = _Scripted(500, requests.ConnectionError("reset"), requests.Timeout("slow"), 503, (201, ack))
    assert p._send(body)
    assert [s[2] for s in p.http.sent] == [body] * 5  # the same judgment, the same uuid, each time
    assert waits == [0.2, 0.4, 0.8, 1.6] and p.stats.acknowledged == {"u-1"} and p.stats.created == 1
    p.http = _Scripted(503, requests.ConnectionError("reset"), (200, b"PNG"))
    assert p._get_retried("/a/tok/img/3/left").content == b"PNG"
    p.http = _Scripted(503, requests.ConnectionError("reset"), (200, b"<html></html>"), 500,
                       (200, b'{"items": []}'))
    assert p._reload() == [] and p.http.script == []
    p.http = _Scripted(requests.ConnectionError("reset"), 502, (200, b'{"done_url": "/a/tok/done"}'),
                       500, (200, b"done"))
    p._complete()
    assert p.stats.completed == 1 and p.http.script == []
    assert not p.stats.failures


@dataclass
class Crowd:
    """Simulated participants (``simclient``) on ``threads`` threads, each followed by a new one until
    ``stop``; ``acked`` is every acknowledged judgment, uuid -> (token, position, choice), with the time of
    its first acknowledgement in ``ack_at``."""

    base: str
    slug: str
    behaviour: Behaviour
    stats: RunStats = field(default_factory=RunStats)
    stop: threading.Event = field(default_factory=threading.Event)
    acked: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    ack_at: list[float] = field(default_factory=list)
    answer_differs: int = 0  # acknowledgements (first or replayed) not saying what was sent
    judging_failures: list[str] = field(default_factory=list)  # of participants that held an assignment
    crashed: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0

    def participant(self) -> SimulatedParticipant:
        crowd = self
        with self.lock:
            index, self._next = self._next, self._next + 1

        class Recording(SimulatedParticipant):
            def _post_json(self, path: str, body: dict) -> requests.Response:
                r = super()._post_json(path, body)
                if path == self.urls.get("judge") and r.status_code in (200, 201):
                    stored = r.json()["judgment"]
                    said = (stored["uuid"], stored["choice"])
                    with crowd.lock:
                        crowd.answer_differs += said != (body["uuid"], body["choice"])
                        if body["uuid"] not in crowd.acked:
                            crowd.acked[body["uuid"]] = (self.token, body["position"], stored["choice"])
                            crowd.ack_at.append(time.monotonic())
                return r

            def _fail(self, why: str) -> None:
                super()._fail(why)
                if self.token:
                    with crowd.lock:
                        crowd.judging_failures.append(why)

        observer = Observer(noise=0.5, scale=1.0, rt_median_ms=400, rng=np.random.default_rng([0, index]))
        return Recording(self.base, self.slug, "open", index, "faults", observer, self.distances, self.stats,
                         self.stop, on_enter=lambda token: None, behaviour=self.behaviour)

    def __post_init__(self) -> None:
        self.distances = parse_observer("psnr")

    def worker(self) -> None:
        try:
            while not self.stop.is_set():
                self.participant().run()
        except Exception as exc:  # SimulationAbort or a bug: the test fails on it
            with self.lock:
                self.crashed.append(f"{type(exc).__name__}: {exc}")

    def start(self, threads: int) -> list[threading.Thread]:
        out = [threading.Thread(target=self.worker, name=f"crowd-{i}", daemon=True) for i in range(threads)]
        for t in out:
            t.start()
        return out


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_judging_survives_postgres_restart_and_worker_kill(transactional_db, experiment_factory, settings,
                                                          tmp_path):
    restart = _restart_command(connection.settings_dict)
    exp = experiment_factory(codecs=("jpeg:10,30,50,70,90",), trials_per_assignment=8, judgments_per_trial=50)
    port = harness.free_port()
    env = harness.server_env(harness.db_url(connection.settings_dict), settings.MEDIA_ROOT,
                             str(tmp_path / "static"), port, workers=3)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env,
                   check=True)
    proc = harness.start_server(env, str(tmp_path / "server.log"))
    base = f"http://127.0.0.1:{port}"
    faults: dict[str, float] = {}
    # think ~0.4 s per trial; 12 tries of the judge POST wait up to ~36 s, well past a restart
    crowd = Crowd(base, exp.slug, Behaviour(reload_rate=0.05, resend_rate=0.05, pace=True, max_attempts=12))
    try:
        threads = crowd.start(60)
        deadline = time.monotonic() + 60
        while crowd.stats.entered < 60 and time.monotonic() < deadline:  # every participant has entered
            time.sleep(0.1)
        assert crowd.stats.entered >= 60, (crowd.stats.failures[:5], crowd.crashed)
        go = time.monotonic()
        time.sleep(5)
        faults["restart"] = time.monotonic()
        done = subprocess.run(restart, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        faults["restarted"] = time.monotonic()
        time.sleep(max(0.0, faults["restart"] + 6 - time.monotonic()))
        before = harness.worker_pids(proc.pid)
        os.kill(before[0], signal.SIGKILL)  # a worker, never the main process
        faults["kill"] = time.monotonic()
        faults["killed_pid"] = before[0]
        time.sleep(max(0.0, go + 20 - time.monotonic()))
        crowd.stop.set()  # no new answers; those in flight are sent until acknowledged
        for t in threads:
            t.join(timeout=max(1.0, go + 120 - time.monotonic()))
        assert not any(t.is_alive() for t in threads), "participants still sending after 100 s"
        for _ in range(20):  # granian starts a replacement a few seconds after a worker dies
            after = harness.worker_pids(proc.pid)
            if len(after) == 3:
                break
            time.sleep(0.5)
        # the site serves again without manual action: a new participant can enter right now
        page = urllib.request.urlopen(f"{base}/p/{exp.slug}/", timeout=10)
        assert page.status == 200
        # static files come from WhiteNoise: hashed name, gzip, cached for good
        css = re.search(r'href="(/static/crowd/task\.[0-9a-f]{12}\.css)"', page.read().decode()).group(1)
        gz = urllib.request.Request(base + css, headers={"Accept-Encoding": "gzip"})
        static = urllib.request.urlopen(gz, timeout=10)
        assert static.headers["Content-Encoding"] == "gzip", dict(static.headers)
        assert "immutable" in static.headers["Cache-Control"], static.headers["Cache-Control"]
    finally:
        crowd.stop.set()
        harness.stop_server(proc)
    connections.close_all()  # the restart killed this process's connection; reconnect for the audit
    with connection.cursor() as cur:
        report = harness.audit(cur, exp.slug, crowd.acked)
    log = (tmp_path / "server.log").read_text(errors="replace")
    st = crowd.stats
    print(f"\nfaults: PostgreSQL restart took {faults['restarted'] - faults['restart']:.1f} s, killed worker "
          f"{faults['killed_pid']}; participants {st.entered} (completed {st.completed}), judgments acked "
          f"{len(crowd.acked)}, retries {st.retries}, replays {st.replays}, reloads {st.reloads}; failures "
          f"{len(st.failures)} {st.failures[:5]}; audit: {report.line()}")
    assert not crowd.crashed, crowd.crashed
    assert len(after) == 3 and faults["killed_pid"] not in after, (after, log[-2000:])
    assert st.retries > 0, "the faults were not felt by any participant"
    assert report.ok and not report.lost and report.duplicate_uuid == report.duplicate_slot == 0
    # nothing given up without an ack: whatever is stored was acknowledged (and the simulated crowd's own
    # set of acknowledged uuids is the same)
    assert report.stored == report.acked == len(crowd.acked) and set(crowd.acked) == st.acknowledged
    assert crowd.answer_differs == 0 and not crowd.judging_failures, crowd.judging_failures[:5]
    # judging went on after each fault (acks later than 3 s after it)
    for t in (faults["restarted"], faults["kill"]):
        assert sum(1 for a in crowd.ack_at if a > t + 3) > 50
