"""The embedded default holds a pilot: ``make run``'s set-up (SQLite, ``runserver``, the demo study) with
20 simulated participants entering and judging at once gets no 5xx (SQLite's writers take the lock when
their transaction begins and wait for it: webapp/settings.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webapp import harness

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_twenty_participants_at_once_on_sqlite(tmp_path):
    port = harness.free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "DEBUG": "1",
           "MEDIA_ROOT": str(tmp_path / "media"), "CROWD_RATE_LIMIT": "0", "REDIS_URL": "",
           "PYTHONUNBUFFERED": "1"}
    env.pop("TEST_DATABASE_NAME", None)

    def manage(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout)

    for step in (("migrate", "--noinput"), ("load_demo",)):
        done = manage(*step)
        assert done.returncode == 0, done.stderr[-2000:]
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        stop = time.monotonic() + 60
        while subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"]).returncode:
            assert server.poll() is None and time.monotonic() < stop, (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        run = manage("simulate_crowd", "demo", "--observer", "psnr", "--participants", "20",
                     "--concurrency", "20", "--rt-median", "50", "--seed", "1",
                     "--base-url", f"http://127.0.0.1:{port}", timeout=500)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    served = (tmp_path / "server.log").read_text()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "participants: 20 entered, 20 completed" in run.stdout, run.stdout[-3000:]
    errors = [line for line in served.splitlines() if '" 5' in line or "Traceback" in line]
    assert not errors, errors[:5]
    assert "database is locked" not in served + run.stdout + run.stderr
