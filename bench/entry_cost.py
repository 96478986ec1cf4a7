"""What one arrival costs the server: consent -> first trial ready, in server CPU and statements.

    python bench/entry_cost.py                 # 300 entries into the demo study on a scratch PostgreSQL

Each entry is what a participant's browser sends once the consent page is shown: the consent POST (a new
participant, an assignment taken under the study's row lock) and the judging page it redirects to (which
carries the assignment's state: the first trial is ready). They go through Django's test client in this
process (its handler runs the whole request cycle, middleware included; no network), on a scratch
PostgreSQL database in production mode (DEBUG=0), after ``--warmup`` entries. The CPU time is this
process's (``time.process_time``: Django and the driver's client side, plus the test client's own work, so
an upper bound), not PostgreSQL's; the statements are counted as Django sends them (BEGIN and COMMIT
included). Target (issue 16): <= 10 statements and <= 8 ms
of server CPU per entry.
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
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _db_url(admin_url: str, name: str) -> str:
    u = urlsplit(admin_url)
    return urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=300, help="entries measured (default 300)")
    ap.add_argument("--warmup", type=int, default=30, help="entries before measuring (default 30)")
    ap.add_argument("--admin-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--db", default="entrybench")
    a = ap.parse_args()
    import psycopg2

    def admin(sql: str) -> None:
        c = psycopg2.connect(a.admin_url)
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute(sql)
        c.close()

    admin(f'DROP DATABASE IF EXISTS "{a.db}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{a.db}"')
    tmp = Path(tempfile.mkdtemp(prefix="entrybench-"))
    os.environ.update(DEBUG="0", SECRET_KEY="bench-" + uuid.uuid4().hex * 2, ALLOWED_HOSTS="testserver",
                      SECURE_SSL_REDIRECT="0", SECURE_COOKIES="0", DATABASE_URL=_db_url(a.admin_url, a.db),
                      MEDIA_ROOT=str(tmp / "media"), STATIC_ROOT=str(tmp / "static"), CROWD_RATE_LIMIT="0",
                      DJANGO_SETTINGS_MODULE="webapp.settings")
    try:
        for cmd in (["migrate", "-v0"], ["load_demo"], ["collectstatic", "--noinput", "-v0"]):
            subprocess.run([sys.executable, "manage.py", *cmd], cwd=ROOT, check=True, capture_output=True)
        _measure(a)
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
    for k, (c, form) in enumerate(forms):
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
    n = Assignment.objects.filter(experiment=exp).count()
    q = statistics.quantiles(cpu, n=20)
    print(f"{len(cpu)} entries timed (after {a.warmup} warm-up and 20 with their statements counted) into a "
          f"study with {n} assignments at the end")
    print(f"server CPU per entry (consent POST + judging page): mean {statistics.mean(cpu):.2f} ms, "
          f"median {statistics.median(cpu):.2f} ms, p95 {q[18]:.2f} ms; wall {statistics.median(wall):.2f} "
          f"ms median (PostgreSQL included)")
    print(f"statements per entry: {min(statements)}-{max(statements)} (BEGIN and COMMIT included)")
    print(f"load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
