"""Launch benchmark: a study launch against the production server + PostgreSQL, on this machine.

    python bench/load.py                       # 1,000 participants arriving within 60 s, think 2 s
    python bench/load.py --images --workers 2  # also fetch every trial's images, as the page does
    python bench/load.py --servers 2 --workers 1   # two servers behind a round-robin nginx, Redis cache
    python bench/load.py --again --duration 280 --export-at 100000   # a 100k export while judging goes on

What it does, in one run:

1. creates a scratch PostgreSQL database (``--db``, default ``loadbench``; dropped at the end unless
   ``--keep-db``), migrates it, loads the demo experiment (``manage.py load_demo``) and sets
   ``trials_per_assignment`` to every normal trial (about 50 items per assignment, like a real study);
2. starts the server exactly as ``make serve-prod`` does (``DEBUG=0``, granian via ``webapp/serve.py``, every
   request through Django) on a free loopback port; the per-IP entry rate limit is switched off
   (``CROWD_RATE_LIMIT=0``) because all simulated participants share 127.0.0.1;
3. the launch: ``--clients`` participants arrive at uniformly random times within ``--ramp`` s (Prolific
   sends hundreds within a minute). Each is a browser profile (aiohttp session with its cookies and
   kept-alive connections): consent page, consent POST, the judging page (which carries the state of the
   assignment: the first trial is ready), its device facts; then it judges item after item with lognormal
   think times (mean ``--think`` s), fetching the trial's images first with ``--images`` (as the page
   preloads them), retrying with the same uuid on a timeout, a connection error or a 5xx with doubling
   backoff like ``webapp/crowd/static/crowd/task.js``; about ``--replay`` of the acknowledged judgments are
   posted again (a lost ack) and ``--reload`` of the participants reload the page once mid-assignment; a
   finished assignment is completed. The judging window (what judgments/s is taken over) runs
   ``--duration`` s from the moment all have arrived;
4. prints, per phase (entry = consent POST + judging page, judge POSTs, images), requests, p50/p95/p99 and
   errors, judgments/s, the server's CPU per request, and audits the database: stored == acknowledged,
   0 duplicates, every stored answer as acknowledged, and at least one judgment stored (exit status 1
   otherwise).

The module is also imported by tests/web/reliability/test_faults.py (``simulate`` and ``audit``) and
tests/web/security/test_slow_clients.py (the server helpers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: webapp.harness holds the server and the audit
    sys.path.insert(0, str(ROOT))
from webapp.harness import (  # noqa: E402
    audit,
    free_port,
    server_capacity,
    server_env,
    start_proxy,
    start_server,
    stop_server,
)

CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
PGBENCH_PATHS = ("/usr/lib/postgresql/15/bin/pgbench", "pgbench")
STATE_RE = re.compile(r'<script id="state" type="application/json">(.*?)</script>', re.S)
RETRY_START_S, RETRY_MAX_S = 0.5, 30.0  # as in task.js
REQUEST_TIMEOUT_S = 30  # the browser waits longer
THINK_SIGMA = 0.5  # lognormal think times: sigma of the log


# --------------------------------------------------------------------------------------------------------
# Simulated workers
# --------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """What the simulated participants saw. ``acked`` maps uuid -> (token, position, choice) of every
    judgment the server acknowledged (200/201); latencies are per HTTP attempt that got a response, by
    phase ("entry": consent POST to the judging page, "judge", "image", "other"), with the monotonic time
    each one ended.

    The judging window of ``duration`` s starts once all have arrived (``started``); participants judge
    from their arrival on."""

    clients: int = 0
    ramp: float = 0.0
    grace: float = 0.0
    t0: float = 0.0  # arrivals start
    started: float = math.inf  # judging window start (all participants arrived)
    deadline: float = math.inf
    ended: float = 0.0
    arrived: int = 0
    acked: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in PHASES})
    at: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in PHASES})
    ack_at: list[float] = field(default_factory=list)  # monotonic time of each first ack
    errors: Counter = field(default_factory=Counter)
    judge_posts: int = 0
    retries: int = 0
    replays: int = 0
    replay_mismatch: int = 0
    reloads: int = 0
    unacked: int = 0  # judgments abandoned at the hard stop without an ack
    assignments: int = 0
    completed: int = 0
    active_workers: set[int] = field(default_factory=set)
    cancelled: int = 0  # participants still waiting on a request when the run was cut off
    in_flight: int = 0
    peak_in_flight: int = 0
    go: asyncio.Event | None = None

    @property
    def window_s(self) -> float:
        return self.deadline - self.started

    @property
    def hard_stop(self) -> float:
        return self.deadline + self.grace

    def in_window(self, t: float) -> bool:
        return self.started <= t < self.deadline

    @property
    def judge_latency(self) -> list[float]:
        return self.latency["judge"]


PHASES = ("entry", "judge", "image", "other")


class _Gone(Exception):
    """The assignment is no longer open (403/404): the page stops, so does the participant."""


async def _request(sess, method: str, url: str, res: Result, kind: str, **kw) -> tuple[int, object, str]:
    """One aiohttp attempt -> (status, JSON or text or bytes, Location), counted in ``res`` (in flight,
    latency, HTTP errors); raises the aiohttp/timeout error."""
    t0 = time.perf_counter()
    res.in_flight += 1
    res.peak_in_flight = max(res.peak_in_flight, res.in_flight)
    try:
        async with sess.request(method, url, allow_redirects=False, **kw) as r:
            if r.content_type == "application/json":
                body = await r.json()
            elif r.content_type.startswith("text/"):
                body = await r.text()
            else:  # images: binary
                body = await r.read()
            status, location = r.status, r.headers.get("Location", "")
    finally:
        res.in_flight -= 1
    phase = kind if kind in PHASES else "other"
    res.latency[phase].append(time.perf_counter() - t0)
    res.at[phase].append(time.monotonic())
    if status >= 400:
        res.errors[f"{kind} HTTP {status}"] += 1
    return status, body, location


async def _with_retries(coro_fn, res: Result, kind: str):
    """Call ``coro_fn`` until it returns a status < 500 (not 429); back off like task.js in between.
    Returns (None, None, None) when the next try would start after the hard stop."""
    import aiohttp

    backoff = RETRY_START_S
    while True:
        try:
            status, body, location = await coro_fn()
            if status < 500 and status != 429:
                return status, body, location
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
            res.errors[f"{kind} {type(e).__name__}"] += 1
        if time.monotonic() + backoff > res.hard_stop:
            return None, None, None
        res.retries += 1
        await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
        backoff = min(backoff * 2, RETRY_MAX_S)


async def _page(sess, base: str, token: str, res: Result, kind: str) -> list | None:
    """GET the judging page and read the assignment's state embedded in it; the items, or None."""
    status, page, _ = await _with_retries(lambda: _request(sess, "GET", f"{base}/a/{token}/", res, kind),
                                          res, kind)
    m = STATE_RE.search(page) if status == 200 and isinstance(page, str) else None
    if m is None:
        res.errors[f"{kind}: no state in the judging page (HTTP {status})"] += 1
        return None
    return json.loads(m.group(1))["items"]


async def _start(sess, base: str, slug: str, res: Result) -> tuple[str, list] | None:
    """Consent on /p/<slug>/ (GET form, POST with CSRF), open the judging page, post the device facts;
    returns (token, items) or None."""
    url = f"{base}/p/{slug}/"
    status, page, _ = await _with_retries(lambda: _request(sess, "GET", url, res, "consent page"), res,
                                          "consent page")
    if status != 200:
        return None
    m = CSRF_RE.search(page)
    entry = re.search(r'name="entry" value="([^"]+)"', page)
    if not m:
        res.errors["entry no CSRF field"] += 1
        return None
    data = {"consent": "yes", "csrfmiddlewaretoken": m.group(1)}
    if entry:  # the open link's signed identity
        data["entry"] = entry.group(1)
    status, _, location = await _with_retries(
        lambda: _request(sess, "POST", url, res, "entry", data=data, headers={"Referer": url}), res, "entry")
    if status != 302 or "/a/" not in location:
        return None
    token = location.rstrip("/").split("/")[-1]
    res.assignments += 1
    items = await _page(sess, base, token, res, "entry")
    if items is None:
        return None
    await _with_retries(lambda: _request(sess, "POST", f"{base}/a/{token}/device", res, "device",
                                         headers={"X-Assignment-Token": token, "Origin": base},
                                         json={"viewport": [1600, 1000], "dpr": 1, "screen": [1920, 1080]}),
                        res, "device")
    return token, items


async def _judge(sess, base: str, token: str, body: dict, res: Result) -> dict | None:
    """POST one judgment, retrying with the same uuid until answered; returns the stored judgment."""
    url, hdr = f"{base}/a/{token}/judge", {"X-Assignment-Token": token, "Origin": base}

    async def attempt():
        res.judge_posts += 1
        return await _request(sess, "POST", url, res, "judge", json=body, headers=hdr)

    status, data, _ = await _with_retries(attempt, res, "judge")
    if status is None:
        return None
    if status in (200, 201):
        return data["judgment"]
    if status in (403, 404):
        raise _Gone(status)
    return None  # 400/409: rejected, the page drops it too (counted in errors)


async def _judge_items(sess, base: str, token: str, items: list, wid: int, res: Result,
                       rng: random.Random, think: float, replay: float, reload: float, images: bool) -> bool:
    """Judge the unanswered items one after the other until the deadline; True when all were judged."""
    reload_at = rng.randrange(1, len(items)) if len(items) > 1 and rng.random() < reload else None
    mu = math.log(think) - THINK_SIGMA ** 2 / 2 if think > 0 else 0.0  # lognormal with mean ``think``
    done = 0
    k = 0
    while k < len(items):
        item = items[k]
        k += 1
        if item.get("answered"):
            done += 1
            continue
        if images:  # the page preloads the trial's images before it shows it
            for side in ("left", "right", "ref"):
                if item.get(side):
                    await _with_retries(lambda u=item[side]: _request(sess, "GET", base + u, res, "image"),
                                        res, "image")
        await asyncio.sleep(rng.lognormvariate(mu, THINK_SIGMA) if think > 0 else 0)
        if time.monotonic() >= res.deadline:
            return False
        body = {"uuid": str(uuid.uuid4()), "position": item["position"],
                "choice": rng.choice(("left", "right")), "response_ms": rng.randint(300, 4000),
                "client_time": None}
        stored = await _judge(sess, base, token, body, res)
        if stored is None:
            res.unacked += 1
            continue
        res.acked[body["uuid"]] = (token, body["position"], stored["choice"])
        res.ack_at.append(time.monotonic())
        res.active_workers.add(wid)
        done += 1
        if stored["choice"] != body["choice"] or stored["uuid"] != body["uuid"]:
            res.errors["judge ack differs from the answer sent"] += 1
        if rng.random() < replay:  # the ack was lost: the page sends the same judgment again
            res.replays += 1
            again = await _judge(sess, base, token, body, res)
            if again is None or (again["uuid"], again["choice"]) != (body["uuid"], body["choice"]):
                res.replay_mismatch += 1
        if reload_at is not None and k == reload_at:  # the participant reloads the page: resume from it
            res.reloads += 1
            fresh = await _page(sess, base, token, res, "reload")
            if fresh is not None:
                items, k, done = fresh, 0, 0
    return done == len(items)


async def _worker(wid: int, base: str, slug: str, res: Result, rng: random.Random, think: float,
                  replay: float, reload: float, images: bool, again: bool) -> None:
    import aiohttp

    await asyncio.sleep(rng.uniform(0, res.ramp))
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    arriving = True
    while arriving or time.monotonic() < res.deadline:
        jar = aiohttp.CookieJar(unsafe=True)  # a new browser profile = a new participant
        conn = aiohttp.TCPConnector(limit=6)  # a browser's connections per host
        async with aiohttp.ClientSession(connector=conn, cookie_jar=jar, timeout=timeout) as sess:
            started = await _start(sess, base, slug, res)
            if arriving:
                arriving = False
                res.arrived += 1
                if res.arrived == res.clients:
                    res.go.set()
            if started is None:
                await asyncio.sleep(1)
                continue
            token, items = started
            try:
                if await _judge_items(sess, base, token, items, wid, res, rng, think, replay, reload, images):
                    status, _, _ = await _with_retries(lambda t=token: _request(
                        sess, "POST", f"{base}/a/{t}/complete", res, "complete",
                        headers={"X-Assignment-Token": t, "Origin": base}), res, "complete")
                    res.completed += status == 200
                    if not again:
                        return  # one assignment per participant: a launch, not a stress test
            except _Gone:
                res.errors["assignment closed mid-run"] += 1


async def simulate(base: str, slug: str, clients: int, duration: float, think: float = 2.0,
                   replay: float = 0.05, ramp: float = 60.0, grace: float = 30.0, images: bool = False,
                   seed: int = 0, progress: bool = True, during=None, arrival_limit: float = 300,
                   reload: float = 0.05, again: bool = False) -> Result:
    """Run ``clients`` simulated participants against ``base``: arrivals within ``ramp`` s, each judging
    from its arrival on; the judging window is ``duration`` s from the last arrival (or ``arrival_limit``
    s), + ``grace`` s for retries in flight. A participant that finishes its assignment leaves (with
    ``again``: comes back as a new participant until the window ends, which keeps the load up).

    ``during`` (optional) is an ``async def f(res)`` run alongside (the fault test injects faults there;
    ``await res.go.wait()`` waits for the judging window).
    """
    from tqdm import tqdm

    res = Result(clients=clients, ramp=ramp, grace=grace, t0=time.monotonic(), go=asyncio.Event())
    master = random.Random(seed)
    tasks = [asyncio.create_task(_worker(i, base, slug, res, random.Random(master.random()), think, replay,
                                         reload, images, again)) for i in range(clients)]
    extra = [asyncio.create_task(during(res))] if during else []

    async def window():
        try:
            await asyncio.wait_for(res.go.wait(), timeout=arrival_limit)
        except TimeoutError:
            res.errors["arrival phase cut off"] += 1
            res.go.set()
        res.started = time.monotonic()
        res.deadline = res.started + duration
        with tqdm(total=int(duration), unit="s", disable=not progress, desc="judging") as bar:
            while time.monotonic() < res.deadline:
                await asyncio.sleep(1)
                bar.update(1)
                bar.set_postfix(acked=len(res.acked), in_flight=res.in_flight,
                                errors=sum(res.errors.values()))

    clock = asyncio.create_task(window())
    try:
        # a request already sent at the hard stop may still take REQUEST_TIMEOUT_S to answer
        _, pending = await asyncio.wait(tasks + extra + [clock],
                                        timeout=arrival_limit + duration + grace + REQUEST_TIMEOUT_S + 5)
        res.cancelled = len(set(pending) & set(tasks))
        for t in tasks + extra:
            if t.done() and not t.cancelled() and t.exception() is not None:
                raise t.exception()
    finally:
        for t in tasks + extra + [clock]:
            t.cancel()
        await asyncio.gather(*tasks, *extra, clock, return_exceptions=True)
    res.ended = time.monotonic()
    return res


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100, nearest rank) of ``values``; nan if empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


# --------------------------------------------------------------------------------------------------------
# Audit (from the database, after the run)
# --------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------


async def export_during(res: Result, base: str, db_url: str, at: int, env: dict, out: dict) -> None:
    """Once ``at`` judgments are acknowledged: log in to the dashboard as the bench's superuser, POST the
    study's export (a background task) and follow its row until it is done; ``out`` gets the times."""
    import psycopg2
    import requests

    while len(res.acked) < at:
        if time.monotonic() > res.deadline:
            return
        await asyncio.sleep(0.5)
    out["asked"], out["acked"] = time.monotonic(), len(res.acked)

    def ask() -> None:
        s = requests.Session()
        login = s.get(f"{base}/lab/login/")
        token = CSRF_RE.search(login.text).group(1)
        r = s.post(f"{base}/lab/login/", {"username": "bench", "password": out["password"],
                                          "csrfmiddlewaretoken": token},
                   headers={"Referer": f"{base}/lab/login/"})
        if r.status_code != 200 or "sessionid" not in s.cookies:
            raise RuntimeError(f"dashboard login failed: {r.status_code} {r.url}")
        # the export button's POST (the study's page itself is not loaded: on a big study its analyses take
        # long, and the button only needs the CSRF cookie's token)
        out["page_s"] = time.monotonic() - out["asked"]
        r = s.post(f"{base}/lab/e/demo/export/", {"csrfmiddlewaretoken": s.cookies["csrftoken"]},
                   headers={"Referer": f"{base}/lab/e/demo/"}, allow_redirects=False)
        assert r.status_code == 302, r.status_code
        out["posted"], out["acked_posted"] = time.monotonic(), len(res.acked)

    await asyncio.to_thread(ask)
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    try:
        while True:
            with conn.cursor() as cur:
                cur.execute("SELECT state, file, error FROM lab_exportjob ORDER BY created DESC LIMIT 1")
                row = cur.fetchone()
            if row is None:
                raise RuntimeError("the dashboard's export POST made no export job")
            state, file, error = row
            if state in ("done", "failed"):
                break
            await asyncio.sleep(0.5)
    finally:
        conn.close()
    out.update(ended=time.monotonic(), state=state, error=error)
    if state == "done":
        import zipfile

        path = Path(env["MEDIA_ROOT"]) / file
        out["mb"] = path.stat().st_size / 1e6
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("/manifest.json"))
            out["judgments"] = json.loads(z.read(name))["counts"]["judgments_in_log"]


# --------------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------------


def cpu_seconds(server_pid: int, client_pids: tuple[int, ...] = ()) -> dict[str, dict[int, float]]:
    """CPU seconds (user + system) used so far, per process, by the server (its process and children), the
    simulated workers (this process and ``client_pids``: the native client's) and the whole machine (key
    0 under "machine")."""
    import psutil

    out: dict[str, dict[int, float]] = {"server": {}, "clients": {}, "machine": {}}
    t = psutil.cpu_times()
    out["machine"][0] = t.user + t.nice + t.system + t.irq + t.softirq + t.steal

    def add(kind: str, p: psutil.Process) -> None:
        try:
            t = p.cpu_times()
            out[kind][p.pid] = t.user + t.system
        except psutil.Error:
            pass

    for pid in (os.getpid(), *client_pids):
        try:
            add("clients", psutil.Process(pid))
        except psutil.Error:
            pass
    try:
        server = psutil.Process(server_pid)
        for p in [server, *server.children(recursive=True)]:
            add("server", p)
    except psutil.Error:
        pass
    return out


def cpu_used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds per component between two ``cpu_seconds`` readings (processes that ended in between are
    not counted; new ones are counted whole)."""
    return {k: sum(t - before[k].get(pid, 0.0) for pid, t in after[k].items()) for k in after}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000, help="participants (default 1000)")
    ap.add_argument("--ramp", type=float, default=60, help="they arrive within this many s (default 60)")
    ap.add_argument("--think", type=float, default=2.0, help="mean think time per trial, s (lognormal; 2.0)")
    ap.add_argument("--duration", type=float, default=60,
                    help="judging window from the last arrival, s (default 60)")
    ap.add_argument("--replay", type=float, default=0.05, help="fraction of acks re-posted (default 0.05)")
    ap.add_argument("--reload", type=float, default=0.05,
                    help="fraction of participants reloading the page once (default 0.05)")
    ap.add_argument("--grace", type=float, default=30, help="s after the window for retries in flight")
    ap.add_argument("--images", action="store_true", help="also GET the 2-3 images of every trial")
    ap.add_argument("--workers", type=int, default=None, help="server workers (default: webapp/serve.py)")
    ap.add_argument("--threads", type=int, default=None, help="threads per worker (default: webapp/serve.py)")
    ap.add_argument("--admin-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                    help="a PostgreSQL URL allowed to CREATE/DROP DATABASE")
    ap.add_argument("--db", default="loadbench", help="scratch database (dropped and recreated)")
    ap.add_argument("--keep-db", action="store_true")
    ap.add_argument("--servers", type=int, default=1,
                    help="server processes on separate ports; more than 1: behind a round-robin nginx proxy "
                         "started here, sharing PostgreSQL and Redis (default 1: no proxy)")
    ap.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                    help="REDIS_URL of the servers when --servers > 1 (the shared cache)")
    ap.add_argument("--again", action="store_true",
                    help="finished participants come back as new ones until the window ends")
    ap.add_argument("--export-at", type=int, default=0, metavar="N",
                    help="once N judgments are acknowledged, ask the dashboard for an export (logged in as a "
                         "superuser) and let the task worker (manage.py db_worker, started here) build it "
                         "while judging goes on; report how long it took")
    a = ap.parse_args()
    if not a.admin_url.startswith("postgres"):
        sys.exit("error: --admin-url must be a PostgreSQL URL")
    import psycopg2
    from scratchdb import admin_sql
    from scratchdb import db_url as scratch_url

    db_url = scratch_url(a.admin_url, a.db)

    def admin(sql: str) -> None:
        admin_sql(a.admin_url, sql)

    admin(f'DROP DATABASE IF EXISTS "{a.db}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{a.db}"')
    tmp = Path(tempfile.mkdtemp(prefix="loadbench-"))
    ports = [free_port() for _ in range(a.servers)]
    envs = [server_env(db_url, str(tmp / "media"), str(tmp / "static"), p, a.workers, a.threads)
            for p in ports]
    if a.servers > 1:
        for e in envs:  # one site: the same secret (signed forms, sessions) and a shared cache
            e.update(REDIS_URL=a.redis, SECRET_KEY=envs[0]["SECRET_KEY"])
    env = envs[0]
    workers, threads = server_capacity(env)
    procs: list[subprocess.Popen] = []
    proxy = task_worker = None
    export: dict = {}
    try:
        print(f"[1/3] scratch database {a.db}: migrate, load_demo, collectstatic", flush=True)
        for cmd in (["migrate", "-v0"], ["load_demo"], ["collectstatic", "--noinput", "-v0"]):
            subprocess.run([sys.executable, "manage.py", *cmd], cwd=ROOT, env=env, check=True,
                           capture_output=True)
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            cur.execute("UPDATE experiments_experiment SET trials_per_assignment = (SELECT count(*) FROM "
                        "experiments_trial t WHERE t.experiment_id = experiments_experiment.id AND "
                        "t.kind = 'normal') WHERE slug = 'demo' "
                        "RETURNING trials_per_assignment")
            per_assignment = cur.fetchone()[0]
        conn.close()
        load_before = os.getloadavg()
        print(f"[2/3] {a.servers} x granian (webapp/serve.py) {workers} workers x {threads} threads on "
              f"127.0.0.1:{','.join(map(str, ports))}", flush=True)
        for k, e in enumerate(envs):
            procs.append(start_server(e, str(tmp / f"server{k}.log")))
        base = f"http://127.0.0.1:{ports[0]}"
        if a.servers > 1:
            proxy, proxy_port = start_proxy(ports, tmp)
            base = f"http://127.0.0.1:{proxy_port}"
            print(f"      nginx round-robin proxy on {base}, REDIS_URL={a.redis}", flush=True)
        if a.export_at:
            password = export.setdefault("password", uuid.uuid4().hex)
            subprocess.run([sys.executable, "manage.py", "createsuperuser", "--noinput", "--username",
                            "bench", "--email", "bench@example.org"], cwd=ROOT, check=True,
                           capture_output=True, env={**env, "DJANGO_SUPERUSER_PASSWORD": password})
            task_worker = subprocess.Popen([sys.executable, "manage.py", "db_worker", "--no-reload"],
                                           cwd=ROOT, env=env, stdout=open(tmp / "worker.log", "ab"),
                                           stderr=subprocess.STDOUT, start_new_session=True)
        print(f"[3/3] {a.clients} participants arriving within {a.ramp:.0f} s, think {a.think} s", flush=True)
        cpu: dict[str, float] = {}

        def server_cpu() -> dict[str, dict[int, float]]:
            out: dict[str, dict[int, float]] = {"server": {}, "clients": {}, "machine": {}}
            for p in procs:
                for kind, per in cpu_seconds(p.pid).items():
                    out[kind].update(per)
            return out

        async def measure_cpu(res: Result) -> None:
            before = server_cpu()
            await res.go.wait()
            cpu["arrival"] = cpu_used(before, server_cpu())["server"]
            window = server_cpu()
            await asyncio.sleep(a.duration)
            cpu.update(cpu_used(window, server_cpu()))

        async def during(res: Result) -> None:
            if a.export_at:
                await asyncio.gather(measure_cpu(res), export_during(res, base, db_url, a.export_at, env,
                                                                     export))
            else:
                await measure_cpu(res)

        import uvloop  # the clients' event loop in C: less of the shared CPU for them

        res = uvloop.run(simulate(base, "demo", a.clients, a.duration, a.think, a.replay, a.ramp, a.grace,
                                  a.images, during=during, reload=a.reload, again=a.again))
        load_after = os.getloadavg()
        for p in procs:
            stop_server(p)
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            report = audit(cur, "demo", res.acked)
        conn.close()
    finally:
        for p in procs:
            stop_server(p)
        for p in (proxy, task_worker):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not a.keep_db:
            admin(f'DROP DATABASE IF EXISTS "{a.db}" WITH (FORCE)')
        log = tmp / "server0.log"
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        shutil.rmtree(tmp, ignore_errors=True)

    acked = sum(1 for t in res.ack_at if res.in_window(t))
    rate = acked / res.window_s

    def pct(xs: list[float]) -> str:
        return ", ".join(f"p{q} {1000 * percentile(xs, q):.0f} ms" for q in (50, 95, 99))

    def phase(name: str, window: bool | None) -> list[float]:
        return [x for x, t in zip(res.latency[name], res.at[name])
                if window is None or res.in_window(t) == window]

    print()
    print(f"machine: {os.cpu_count()} cores; server, PostgreSQL and the simulated participants on the same "
          "machine (loopback); participants: asyncio on uvloop (aiohttp), one browser profile each")
    print(f"server: {a.servers} x granian, {workers} workers x {threads} threads, DEBUG=0, every request "
          f"through Django, CROWD_RATE_LIMIT=0 (off)"
          + (f"; behind a round-robin nginx proxy, cache on Redis ({a.redis})" if a.servers > 1 else ""))
    print(f"launch: {res.clients} participants arrived within {res.started - res.t0:.1f} s (uniform over "
          f"{res.ramp:.0f} s), {per_assignment} normal trials each, think lognormal mean {a.think} s; "
          f"assignments taken {res.assignments}, completed {res.completed}, reloads {res.reloads}")
    entry = phase("entry", None)
    print(f"entry (consent POST, judging page with the first trial's state): {len(entry)} requests, "
          f"{pct(entry)}")
    judge = phase("judge", True)
    print(f"judging window: {res.window_s:.0f} s from the last arrival ({len(res.active_workers)} "
          f"participants made >= 1 judgment; peak {res.peak_in_flight} requests in flight)")
    print(f"judgments/s in the window: {rate:.1f} ({acked} acknowledged in it; {len(res.acked)} in all)")
    print(f"judge POSTs (window): {len(judge)}, {pct(judge)}, max {1000 * max(judge, default=0):.0f} ms; "
          f"all: {pct(res.latency['judge'])} (retries {res.retries}, replays {res.replays}, replay answers "
          f"differing {res.replay_mismatch})")
    if a.images:
        images = phase("image", None)
        print(f"images: {len(images)} requests, {pct(images)}")
    other = phase("other", None)
    print(f"other requests (consent page, device, reloads, completion): {len(other)}, {pct(other)}")
    print(f"errors: {sum(res.errors.values())} {dict(res.errors) if res.errors else ''}; judgments abandoned "
          f"without ack {res.unacked}; participants cut off waiting for an answer {res.cancelled}")
    if cpu:
        in_window = sum(1 for k in PHASES for t in res.at[k] if res.in_window(t))
        arrival_req = sum(1 for k in PHASES for t in res.at[k] if t < res.started)
        busy = 100 * cpu["machine"] / (res.window_s * os.cpu_count())
        print(f"server CPU: arrival phase {cpu['arrival']:.1f} s for {arrival_req} requests "
              f"({1000 * cpu['arrival'] / max(arrival_req, 1):.2f} ms per request); judging window "
              f"{cpu['server']:.1f} s for {in_window} requests "
              f"({1000 * cpu['server'] / max(in_window, 1):.2f} ms per request, "
              f"{1000 * cpu['server'] / max(acked, 1):.2f} ms per judgment); machine busy "
              f"{busy:.0f} % in the window (simulated participants {cpu['clients']:.1f} s)")
    if a.export_at:
        if "asked" not in export:
            print(f"export: not asked ({a.export_at} acknowledged judgments were not reached)")
        else:
            during_export = [x for x, t in zip(res.latency["judge"], res.at["judge"])
                             if export.get("posted", export["asked"]) <= t < export.get("ended", res.ended)]
            print(f"export from the dashboard (background task, db_worker): login "
                  f"from {export['acked']} acknowledged judgments on, {export.get('page_s', math.nan):.1f} "
                  f"s; "
                  f"export POSTed at {export.get('acked_posted', '?')}, {export.get('state', '?')} after "
                  f"{export.get('ended', res.ended) - export.get('posted', export['asked']):.1f} s "
                  f"({'within' if export.get('ended', math.inf) < res.deadline else 'NOT within'} the "
                  f"judging window); {export.get('judgments', '?')} judgments in its log, zip "
                  f"{export.get('mb', 0):.1f} MB{'; ' + export['error'] if export.get('error') else ''}; "
                  f"judge POSTs while it ran: {len(during_export)}, {pct(during_export)}")
    print(f"load average (1 min) before the run {load_before[0]:.2f} (other jobs), at its end "
          f"{load_after[0]:.2f} (this benchmark's processes included), {os.cpu_count()} cores")
    print(f"audit: {report.line()} -> {'OK' if report.ok else 'FAILED'}")
    if res.errors and tail:
        print("server log tail:\n  " + "\n  ".join(tail))
    if not report.ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
