"""What one arrival costs the server: consent -> first trial ready, in server CPU and statements.

    python -m bench.entry_cost                 # 300 entries into the demo study on a scratch PostgreSQL
    python -m bench.entry_cost --served        # the same through the production server (granian), over HTTP

Each entry is what a participant's browser sends once the consent page is shown: the consent POST (a new
participant, an assignment taken under the study's row lock) and the judging page it redirects to (which
carries the assignment's state: the first trial is ready). They go through Django's test client in this
process (its handler runs the whole request cycle, middleware included; no network), on a scratch
PostgreSQL database in production mode (DEBUG=0), after ``--warmup`` entries. The CPU time is this
process's (``time.process_time``: Django and the driver's client side, plus the test client's own work, so
an upper bound), not PostgreSQL's; the statements are counted as Django sends them (BEGIN and COMMIT
included). Target (issue 16): <= 10 statements and <= 8 ms
of server CPU per entry.

``--served`` measures the server's share alone: the server started as ``make serve-prod`` starts it
(granian, ``webapp/serve.py``, DEBUG=0) on loopback, the entries sent one after the other over HTTP (a
``requests`` session per participant: consent page, consent POST, judging page), and the CPU time of the
server's processes (user + system, from /proc) taken over the consent POSTs and judging pages only, divided
by the entries; the same is taken over as many requests for a static file (the cost of any request) and
over an idle wait as long as the run (subtracted).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from webapp.harness import (
    admin_sql,
    cpu_seconds,
    cpu_used,
    free_port,
    scratch_url,
    server_env,
    start_server,
    stop_server,
)

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=300, help="entries measured (default 300)")
    ap.add_argument("--warmup", type=int, default=30, help="entries before measuring (default 30)")
    ap.add_argument("--admin-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--db", default="entrybench")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the timed entries into FILE (pstats)")
    ap.add_argument("--served", action="store_true", help="through the production server over HTTP")
    a = ap.parse_args()

    def admin(sql: str) -> None:
        admin_sql(a.admin_url, sql)

    admin(f'DROP DATABASE IF EXISTS "{a.db}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{a.db}"')
    tmp = Path(tempfile.mkdtemp(prefix="entrybench-"))
    os.environ.update(DEBUG="0", SECRET_KEY="bench-" + uuid.uuid4().hex * 2, ALLOWED_HOSTS="testserver",
                      SECURE_SSL_REDIRECT="0", SECURE_COOKIES="0",
                      DATABASE_URL=scratch_url(a.admin_url, a.db),
                      MEDIA_ROOT=str(tmp / "media"), STATIC_ROOT=str(tmp / "static"), CROWD_RATE_LIMIT="0",
                      DJANGO_SETTINGS_MODULE="webapp.settings")
    try:
        for cmd in (["migrate", "-v0"], ["load_demo"], ["collectstatic", "--noinput", "-v0"]):
            subprocess.run([sys.executable, "manage.py", *cmd], cwd=ROOT, check=True, capture_output=True)
        _measure_served(a, tmp) if a.served else _measure(a)
    finally:
        from django.db import connections

        connections.close_all()
        admin(f'DROP DATABASE IF EXISTS "{a.db}" WITH (FORCE)')


def _measure(a: argparse.Namespace) -> None:
    from django.core.wsgi import get_wsgi_application
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    get_wsgi_application()  # settings, apps, middleware as served
    from webapp.crowd.models import Assignment
    from webapp.experiments.models import Experiment

    exp = Experiment.objects.get(slug="demo")
    forms = []
    for _ in range(a.warmup + a.entries):  # the consent pages (not measured: a GET that writes nothing)
        c = Client(enforce_csrf_checks=True)
        page = c.get(f"/p/{exp.slug}/").content.decode()
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
        forms.append((c, {**fields, "consent": "yes"}))
    cpu, wall, statements = [], [], []
    prof = None
    if a.profile:
        import cProfile

        prof = cProfile.Profile(time.process_time)  # CPU, not waits on PostgreSQL
    for k, (c, form) in enumerate(forms):
        if prof and k == a.warmup + 20:
            prof.enable()
        counting = a.warmup <= k < a.warmup + 20  # statements counted on 20 entries (not timed: capturing
        q = CaptureQueriesContext(connection)  # formats every statement, which costs CPU of its own)
        if counting:
            q.__enter__()
        t_cpu, t_wall = time.process_time(), time.perf_counter()
        r = c.post(f"/p/{exp.slug}/", form)
        page = c.get(r["Location"])
        t_cpu, t_wall = time.process_time() - t_cpu, time.perf_counter() - t_wall
        if counting:
            q.__exit__(None, None, None)
            statements.append(len(q.captured_queries))
        assert r.status_code == 302 and page.status_code == 200 and b'id="state"' in page.content
        if k >= a.warmup + 20:
            cpu.append(1000 * t_cpu)
            wall.append(1000 * t_wall)
    if prof:
        prof.disable()
        prof.dump_stats(a.profile)
    n = Assignment.objects.filter(experiment=exp).count()
    q = statistics.quantiles(cpu, n=20)
    print(f"{len(cpu)} entries timed (after {a.warmup} warm-up and 20 with their statements counted) into a "
          f"study with {n} assignments at the end")
    print(f"server CPU per entry (consent POST + judging page): mean {statistics.mean(cpu):.2f} ms, "
          f"median {statistics.median(cpu):.2f} ms, p95 {q[18]:.2f} ms; wall {statistics.median(wall):.2f} "
          f"ms median (PostgreSQL included)")
    print(f"statements per entry: {min(statements)}-{max(statements)} (BEGIN and COMMIT included)")
    print(f"load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


def _measure_served(a: argparse.Namespace, tmp: Path) -> None:
    import requests


    port = free_port()
    env = server_env(os.environ["DATABASE_URL"], str(tmp / "media"), str(tmp / "static"), port, None)
    proc = start_server(env, str(tmp / "server.log"))
    base = f"http://127.0.0.1:{port}"
    try:
        def consent_forms(n: int) -> list:
            out = []
            for _ in range(n):
                s = requests.Session()
                page = s.get(f"{base}/p/demo/").text
                fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
                out.append((s, {**fields, "consent": "yes"}))
            return out

        def enter(forms: list) -> float:
            before, t0 = cpu_seconds(proc.pid), time.perf_counter()
            for s, form in forms:
                r = s.post(f"{base}/p/demo/", form, headers={"Origin": base, "Referer": f"{base}/p/demo/"},
                           allow_redirects=False)
                page = s.get(base + r.headers["Location"])
                assert r.status_code == 302 and page.status_code == 200 and 'id="state"' in page.text
            return 1000 * cpu_used(before, cpu_seconds(proc.pid))["server"], time.perf_counter() - t0

        enter(consent_forms(a.warmup))
        forms = consent_forms(a.entries)
        entry_ms, wall = enter(forms)
        s = requests.Session()
        before = cpu_seconds(proc.pid)
        for _ in range(2 * a.entries):
            assert s.get(f"{base}/static/crowd/task.css").status_code == 200
        static_ms = 1000 * cpu_used(before, cpu_seconds(proc.pid))["server"]
        before = cpu_seconds(proc.pid)
        time.sleep(wall)
        idle_ms = 1000 * cpu_used(before, cpu_seconds(proc.pid))["server"]
    finally:
        stop_server(proc)
    workers, threads = int(env.get("WEB_WORKERS", 0)), int(env.get("WEB_THREADS", 0))
    print(f"{a.entries} entries through granian (webapp/serve.py{f', {workers} workers' if workers else ''}"
          f"{f' x {threads} threads' if threads else ''}) over HTTP, one after the other, in {wall:.1f} s")
    print(f"server CPU per entry (consent POST + judging page): {(entry_ms - idle_ms) / a.entries:.2f} ms "
          f"({entry_ms / a.entries:.2f} ms before subtracting {idle_ms / a.entries:.2f} ms of idle CPU)")
    print(f"server CPU per request for a static file (whitenoise; any request's floor): "
          f"{static_ms / (2 * a.entries):.2f} ms")
    print(f"load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
