"""Launch benchmark: participants arriving within a minute (Locust, ``bench/locustfile.py``) against the
production server + PostgreSQL behind the shipped nginx site, everything on this machine.

    python -m bench.launch                               # 1,000 arrivals within 60 s, 1 server, no images
    python -m bench.launch --images --workers 1          # + every trial's images, one server process
    python -m bench.launch --images --workers 2          # the same with two worker processes
    python -m bench.launch --images --servers 2 --workers 1   # two servers on their own ports, Redis cache
    python -m bench.launch --plain                       # straight to the server over plain HTTP (no nginx)

1. a scratch PostgreSQL database (``--db``, dropped at the end unless ``--keep-db``): migrate, ``load_demo``
   with ``trials_per_assignment`` set to every normal trial of the demo study (about 50 items per
   assignment, like a real study), collectstatic;
2. the server(s) exactly as ``make serve-prod`` starts them (``webapp/serve.py``, ``DEBUG=0``; the per-IP
   entry rate limit off, ``CROWD_RATE_LIMIT=0``, since every participant comes from 127.0.0.1), behind
   nginx running deploy/nginx/lab.conf (``webapp.harness.start_site``: HTTPS with a self-signed certificate,
   buffered bodies, static files, the stimulus images sent by nginx after Django authorised them with
   ``X-Accel-Redirect``, ``SERVED_X_ACCEL_REDIRECT=/_served/``, ``CROWD_TRUSTED_PROXY_HOPS=1``);
3. ``locust --headless -u CLIENTS -r CLIENTS/RAMP`` with the locustfile: each participant arrives once,
   consents, judges its assignment with think times until ``--window`` s after the last arrival, images
   first with ``--images``, retries, replays, reloads, completes (see the locustfile);
4. prints per request group (entry, judge, image, other) Locust's p50/p95/p99 over the whole run and its
   failures, judgments/s in the window, the CPU seconds of the server, of the scratch database's
   PostgreSQL backends, of nginx, of Locust and of everything else on the machine; then audits the
   database against the acknowledged judgments (stored = acknowledged, no duplicates, each stored answer
   as acknowledged; at least one stored): exit status 1 when the audit fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psycopg2

from webapp import harness

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("entry", "judge", "image", "other")


def wait_for_window(locust: subprocess.Popen, acked_file: Path,
                    meter: harness.CpuMeter) -> tuple[dict[str, float], float]:
    """Wait until the judging window ends (the first process's, from the acked file) or Locust exits; the
    CPU used until then and how long that took, s (the grace period after the window, mostly idle, is left
    out)."""
    t0, end = time.monotonic(), None
    while locust.poll() is None:
        if end is None and acked_file.exists():
            with acked_file.open() as f:
                end = next((json.loads(line)["window"][1] for line in f if '"window"' in line), None)
        if end is not None and time.time() >= end:
            break
        time.sleep(0.5)
    return meter.used(), time.monotonic() - t0


def percentile(hist: Counter, q: float) -> float:
    """The ``q``-th percentile (0-100, nearest rank) of a {ms: count} histogram; nan if empty."""
    n = sum(hist.values())
    index, seen = max(0, math.ceil(q / 100 * n) - 1), 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen > index:
            return float(ms)
    return float("nan")


def group_stats(prefix: Path) -> tuple[dict[str, dict[str, float]], list[dict[str, str]]]:
    """Per request name, all methods together (Locust keeps one entry per name and method; its
    ``--json-file`` holds each one's response time histogram, in Locust's rounding: 1 ms below 100 ms,
    10 ms below 1 s, 100 ms above): requests, failures, p50/p95/p99, max; and Locust's failures."""
    hists: dict[str, Counter] = {}
    out: dict[str, dict[str, float]] = {}
    for e in json.loads(Path(f"{prefix}.json").read_text()):
        hists.setdefault(e["name"], Counter()).update({int(k): v for k, v in e["response_times"].items()})
        g = out.setdefault(e["name"], {"requests": 0, "failures": 0, "max": 0})
        g["requests"] += e["num_requests"]
        g["failures"] += e["num_failures"]
        g["max"] = max(g["max"], e["max_response_time"] or 0)
    for name, h in hists.items():
        out[name].update({f"p{q}": percentile(h, q) for q in (50, 95, 99)})
    with open(f"{prefix}_failures.csv") as f:
        failures = list(csv.DictReader(f))
    return out, failures


def read_acked(path: Path) -> tuple[dict[str, tuple[str, int, str]], list[float], tuple[float, float],
                                    Counter]:
    """The locustfile's records: acked (uuid -> (token, position, choice)), the ack times, the judging window
    (the earliest start and end among the processes) and the users' counters summed."""
    acked: dict[str, tuple[str, int, str]] = {}
    times: list[float] = []
    windows: list[tuple[float, float]] = []
    counts: Counter = Counter()
    for line in path.read_text().splitlines() if path.exists() else []:
        r = json.loads(line)
        if "uuid" in r:
            acked[r["uuid"]] = (r["token"], r["position"], r["choice"])
            times.append(r["t"])
        elif "window" in r:
            windows.append(tuple(r["window"]))
        elif "user" in r:
            counts.update(r["user"])
    window = (min(w[0] for w in windows), min(w[1] for w in windows)) if windows else (0.0, 0.0)
    return acked, times, window, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000, help="participants (default 1000)")
    ap.add_argument("--ramp", type=float, default=60, help="they arrive within this many s (default 60)")
    ap.add_argument("--window", type=float, default=60, help="judging goes on this long after the last "
                    "arrival, s (default 60)")
    ap.add_argument("--grace", type=float, default=30, help="s after the window for retries in flight")
    ap.add_argument("--think", type=float, default=2.0, help="mean think time per trial, s (lognormal; 2.0)")
    ap.add_argument("--replay", type=float, default=0.05, help="fraction of acks re-posted (default 0.05)")
    ap.add_argument("--reload", type=float, default=0.05, help="fraction of participants reloading once")
    ap.add_argument("--images", action="store_true", help="also GET the 2-3 images of every trial")
    ap.add_argument("--workers", type=int, default=None, help="server worker processes (WEB_WORKERS; "
                    "default: webapp/serve.py's, one per core)")
    ap.add_argument("--threads", type=int, default=None, help="threads per worker (default: webapp/serve.py)")
    ap.add_argument("--servers", type=int, default=1, help="servers on separate ports, all upstream of the "
                    "site, sharing one secret and the Redis cache (default 1)")
    ap.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                    help="REDIS_URL of the servers when --servers > 1")
    ap.add_argument("--plain", action="store_true", help="no nginx: plain HTTP straight to the one server "
                    "(images sent by Django)")
    ap.add_argument("--processes", type=int, default=0, help="Locust worker processes (default 0: Locust "
                    "runs in one process)")
    ap.add_argument("--admin-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                    help="a PostgreSQL URL allowed to CREATE/DROP DATABASE")
    ap.add_argument("--db", default="launchbench", help="scratch database (dropped and recreated)")
    ap.add_argument("--keep-db", action="store_true")
    ap.add_argument("--out", default="", help="keep Locust's CSV files, the acked records and the logs here")
    a = ap.parse_args()
    if a.plain and a.servers > 1:
        sys.exit("error: --plain runs one server (--servers 2 needs nginx in front)")
    db_url = harness.scratch_url(a.admin_url, a.db)
    harness.admin_sql(a.admin_url, f'DROP DATABASE IF EXISTS "{a.db}" WITH (FORCE)')
    harness.admin_sql(a.admin_url, f'CREATE DATABASE "{a.db}"')
    tmp = Path(tempfile.mkdtemp(prefix="launch-"))
    out = Path(a.out) if a.out else tmp
    out.mkdir(parents=True, exist_ok=True)
    ports = [harness.free_port() for _ in range(a.servers)]
    envs = [harness.server_env(db_url, str(tmp / "media"), str(tmp / "static"), p, a.workers, a.threads)
            for p in ports]
    for e in envs:
        if not a.plain:  # behind the site as deployed (deploy/lab.env)
            e.update(SECURE_SSL_REDIRECT="1", SECURE_COOKIES="1", CROWD_TRUSTED_PROXY_HOPS="1",
                     SERVED_X_ACCEL_REDIRECT="/_served/", WEB_BUFFERING_PROXY="1")
        if a.servers > 1:  # one site: one secret (signed forms, sessions) and a shared cache
            e.update(REDIS_URL=a.redis, SECRET_KEY=envs[0]["SECRET_KEY"])
    workers, threads = harness.server_capacity(envs[0])
    procs: list[subprocess.Popen] = []
    site = locust = None
    acked_file, prefix = out / "acked.jsonl", out / "locust"
    acked_file.unlink(missing_ok=True)
    try:
        print(f"[1/3] scratch database {a.db}: migrate, load_demo, collectstatic", flush=True)
        for cmd in (["migrate", "-v0"], ["load_demo"], ["collectstatic", "--noinput", "-v0"]):
            subprocess.run([sys.executable, "manage.py", *cmd], cwd=ROOT, env=envs[0], check=True,
                           capture_output=True)
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            cur.execute("UPDATE experiments_experiment SET trials_per_assignment = (SELECT count(*) FROM "
                        "experiments_trial t WHERE t.experiment_id = experiments_experiment.id AND "
                        "t.kind = 'normal') WHERE slug = 'demo' RETURNING trials_per_assignment")
            per_assignment = cur.fetchone()[0]
        conn.close()
        for k, e in enumerate(envs):
            procs.append(harness.start_server(e, str(out / f"server{k}.log")))
        base = f"http://127.0.0.1:{ports[0]}"
        if not a.plain:
            cert, key = harness.self_signed(tmp)
            site = harness.start_site(tmp, ports, str(tmp / "static"), str(tmp / "media"), cert, key)
            base = site.https
        print(f"[2/3] {a.servers} x granian (webapp/serve.py) {workers} workers x {threads} threads"
              + (" straight, plain HTTP" if a.plain else f", behind nginx (deploy/nginx/lab.conf) at {base}"),
              flush=True)
        rate = a.clients / a.ramp
        run_time = int(a.ramp + a.window + a.grace + 5)
        cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
               "-H", base, "-u", str(a.clients), "-r", f"{rate:.4f}", "--run-time", f"{run_time}s",
               "--csv", str(prefix), "--json-file", str(prefix), "--only-summary",
               "--acked-file", str(acked_file),
               "--think", str(a.think), "--window", str(a.window), "--grace", str(a.grace),
               "--replay", str(a.replay), "--reload", str(a.reload)]
        cmd += ["--images"] if a.images else []
        cmd += ["--processes", str(a.processes)] if a.processes else []
        print(f"[3/3] {a.clients} participants arriving within {a.ramp:.0f} s ({rate:.2f}/s), think "
              f"{a.think} s, window {a.window:.0f} s: {' '.join(cmd[2:])}", flush=True)
        load_before = os.getloadavg()
        meter = harness.CpuMeter({
            "server": lambda: harness.processes(*(p.pid for p in procs), children=True),
            "postgres": lambda: harness.postgres_processes(a.db),
            "nginx": lambda: harness.processes(site.proc.pid, children=True) if site else [],
            "locust": lambda: harness.processes(locust.pid, children=True) if locust else []})
        meter.start()
        locust = subprocess.Popen(cmd, cwd=ROOT, stdout=open(out / "locust.log", "wb"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
        cpu, active = wait_for_window(locust, acked_file, meter)
        locust.wait()
        meter.stop.set()
        load_after = os.getloadavg()
        for p in procs:
            harness.stop_server(p)
        acked, ack_times, window, counts = read_acked(acked_file)
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            report = harness.audit(cur, "demo", acked)
        conn.close()
        stats, failures = group_stats(prefix)
    finally:
        if locust is not None and locust.poll() is None:
            locust.kill()
        for p in procs:
            harness.stop_server(p)
        if site is not None:
            harness.stop_nginx(site.proc)
        if not a.keep_db:
            harness.admin_sql(a.admin_url, f'DROP DATABASE IF EXISTS "{a.db}" WITH (FORCE)')
        tail = (out / "locust.log").read_text(errors="replace").splitlines()[-30:] \
            if (out / "locust.log").exists() else []
        shutil.rmtree(tmp, ignore_errors=True)  # media, static files, certificate (and without --out, all)

    print()
    print(f"machine: {os.cpu_count()} cores, server, PostgreSQL, nginx and Locust on it (loopback); "
          f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} at the end")
    print(f"server: {a.servers} x granian {workers} workers x {threads} threads, DEBUG=0, "
          "CROWD_RATE_LIMIT=0; "
          + ("plain HTTP, no proxy" if a.plain else "behind nginx (the shipped site: HTTPS, X-Accel-Redirect "
             "images)") + (f", cache on Redis ({a.redis})" if a.servers > 1 else ""))
    print(f"launch: {counts['arrived']} participants arrived within {a.ramp:.0f} s, {per_assignment} normal "
          f"trials each, think lognormal mean {a.think} s; assignments {counts['assignments']}, completed "
          f"{counts['completed']}, reloads {counts['reloads']}, entries failed {counts['entry failed']}")
    for g in GROUPS:
        if g in stats:
            s = stats[g]
            print(f"{g:6s} {s['requests']:7,d} requests, p50 {s['p50']:.0f} / p95 {s['p95']:.0f} / p99 "
                  f"{s['p99']:.0f} / max {s['max']:.0f} ms, {s['failures']} failed")
    in_window = sum(1 for t in ack_times if window[0] <= t < window[1])
    span = window[1] - window[0]
    print(f"judgments/s in the {span:.0f} s window after the last arrival: {in_window / max(span, 1e-9):.1f} "
          f"({in_window} acknowledged in it, {len(acked)} in all); retries {counts['retries']}, replays "
          f"{counts['replays']} (answered differently {counts['replay answered differently']}), rejected "
          f"{counts['rejected']}, abandoned without ack {counts['unacked']}")
    print(f"failures: {sum(int(f['Occurrences']) for f in failures)} "
          + "; ".join(f"{f['Name']} {f['Error']} x{f['Occurrences']}" for f in failures))
    ours = sum(v for k, v in cpu.items() if k != "machine")
    cores = os.cpu_count() or 1
    requests = sum(s["requests"] for s in stats.values())
    print(f"CPU from the start to the end of the window ({active:.0f} s x {cores} cores = "
          f"{active * cores:.0f} core-s): " + ", ".join(
              f"{k} {v:.0f} s ({1000 * v / max(requests, 1):.2f} ms per request)" for k, v in cpu.items()
              if k != "machine")
          + f"; everything else {max(cpu['machine'] - ours, 0):.0f} s, "
            f"idle {max(active * cores - cpu['machine'], 0):.0f} s")
    print(f"audit: {report.line()} -> {'OK' if report.ok else 'FAILED'}")
    if not report.ok:
        print("locust log tail:\n  " + "\n  ".join(tail))
        sys.exit(1)


if __name__ == "__main__":
    main()
