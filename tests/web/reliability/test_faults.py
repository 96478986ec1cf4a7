"""Faults under load: PostgreSQL restarts and a server worker is SIGKILLed while participants judge.

The production server (``make serve-prod``: granian, DEBUG=0, its default workers and threads, persistent
connections with health checks) serves the pytest test database; 60 simulated
participants (bench/load.py: consent, state, judgments with think times, retries with the same uuid on
timeouts / connection errors / 5xx with doubling backoff as task.js does, 5 % replays) take assignments,
then judge for 20 s. 5 s into that, PostgreSQL is restarted with

    pg_ctlcluster --skip-systemctl-redirect <version> <cluster> restart

(the cluster serving DATABASES' port, found with pg_lsclusters); 6 s after the restart began one worker
(not the main process) gets SIGKILL and granian starts another. Afterwards every acknowledged judgment is
stored exactly once with the acknowledged answer, none is left without an ack, and judging went on after
both faults without anyone restarting anything.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.db import connection, connections

from tests.benchload import bench_load
from webapp import harness

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


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_judging_survives_postgres_restart_and_worker_kill(transactional_db, experiment_factory, settings,
                                                          tmp_path):
    restart = _restart_command(connection.settings_dict)
    load = bench_load()
    exp = experiment_factory(codecs=("jpeg:10,30,50,70,90",), trials_per_assignment=8, judgments_per_trial=50)
    s = connection.settings_dict
    db_url = (f"postgres://{s['USER']}{':' + s['PASSWORD'] if s.get('PASSWORD') else ''}@"
              f"{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}")
    port = harness.free_port()
    env = harness.server_env(db_url, settings.MEDIA_ROOT, str(tmp_path / "static"), port, workers=3)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env,
                   check=True)
    proc = harness.start_server(env, str(tmp_path / "server.log"))
    base = f"http://127.0.0.1:{port}"
    faults: dict[str, float] = {}

    async def inject(res):
        await res.go.wait()  # every participant has taken an assignment; judging has started
        await asyncio.sleep(5)
        faults["restart"] = time.monotonic()
        done = await asyncio.to_thread(subprocess.run, restart, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        faults["restarted"] = time.monotonic()
        await asyncio.sleep(max(0.0, faults["restart"] + 6 - time.monotonic()))
        before = harness.worker_pids(proc.pid)
        os.kill(before[0], signal.SIGKILL)  # a worker, never the main process
        faults["kill"] = time.monotonic()
        faults["killed_pid"] = before[0]

    try:
        res = asyncio.run(load.simulate(base, exp.slug, clients=60, duration=20, think=0.4, replay=0.05,
                                        ramp=2, grace=40, progress=False, during=inject, again=True))
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
        harness.stop_server(proc)
    connections.close_all()  # the restart killed this process's connection; reconnect for the audit
    with connection.cursor() as cur:
        report = harness.audit(cur, exp.slug, res.acked)
    log = (tmp_path / "server.log").read_text(errors="replace")
    print(f"\nfaults: PostgreSQL restart took {faults['restarted'] - faults['restart']:.1f} s, killed worker "
          f"{faults['killed_pid']}; judge POSTs {res.judge_posts}, retries {res.retries}, errors "
          f"{dict(res.errors)}; audit: {report.line()}")
    assert len(after) == 3 and faults["killed_pid"] not in after, (after, log[-2000:])
    assert res.retries > 0 and res.errors, "the faults were not felt by any client"
    assert report.ok and not report.lost and report.duplicate_uuid == report.duplicate_slot == 0
    assert res.unacked == 0 and report.stored == report.acked == len(res.acked)
    assert res.replay_mismatch == 0
    # judging went on after each fault (acks later than 3 s after it)
    for t in (faults["restarted"], faults["kill"]):
        assert sum(1 for a in res.ack_at if a > t + 3) > 50
