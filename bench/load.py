"""Load benchmark of the judging path: 1,000+ simulated crowdworkers against the server + PostgreSQL.

    python bench/load.py --clients 1000 --duration 60 --think 1.5

What it does, in one run on this machine:

1. creates a scratch PostgreSQL database (``--db``, default ``loadbench``; dropped at the end unless
   ``--keep-db``), migrates it, loads the demo experiment (``manage.py load_demo``) and sets
   ``trials_per_assignment`` to every normal trial (about 50 items per assignment, like a real study);
2. measures the raw single-row INSERT throughput of this PostgreSQL server with pgbench: autocommit
   single-row INSERTs into a copy of the judgment table (same columns and indexes, no foreign keys), with
   as many concurrent connections as the server can hold (workers x threads) and with one per worker,
   synchronous_commit as the server has it; measured again after the run (step 6), and the ratio is
   taken against the faster of the two, since the disk's fsync time drifts;
3. starts the server exactly as ``make serve-prod`` does (``DEBUG=0``, granian via ``webapp/serve.py``) on a
   free loopback port; the per-IP entry rate limit is switched off (``CROWD_RATE_LIMIT=0``) because all
   simulated workers share 127.0.0.1;
4. arrival: ``--clients`` simulated workers arrive spread over ``--ramp`` s; each consents on
   ``/p/demo/`` (CSRF form), reads the state and posts its device, like the judging page (with cookies);
   its judge POSTs then go over one kept-alive connection, as a browser tab's. ``--client python`` (the
   default): asyncio workers (uvloop) in this process, aiohttp for the arrival, ``KeepAlive`` for the judge
   POSTs. ``--client native``: the same workers as a compiled program (``bench/loadclient``, Rust, one
   thread each; built here with cargo), taking a fraction of the CPU the Python ones take from the 2
   cores they share with the server;
5. judging window (``--duration`` s, from the moment all have arrived): each judges item after item with
   exponential think times (mean ``--think`` s), retrying with the same uuid on a timeout, a connection
   error or a 5xx with doubling backoff, like ``webapp/crowd/static/crowd/task.js``; about ``--replay`` of
   the acknowledged judgments are posted again (a lost ack); a finished assignment is completed and the
   worker takes a new one. After the deadline no new judgment is started; retries in flight may finish
   during ``--grace`` s;
6. prints judgments/s in the window, judge POST latency p50/p95/p99, errors, the ratio of judgments/s to
   the raw INSERT/s, the CPU time per judgment of the server, PostgreSQL, the clients (this process, and
   the native client's) and the whole machine, the load average (other jobs share the machine), and
   audits the database: judgments stored == distinct judgments acknowledged, 0 duplicates, 0 lost,
   every stored answer equal to the acknowledged one (exit status 1 otherwise).

The module is also imported by tests/web/reliability/test_faults.py (``simulate`` and ``audit``) and
tests/bench/test_loadclient.py (``native_simulate``).
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
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # webapp.serve holds the server's command line
    sys.path.insert(0, str(ROOT))
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
PGBENCH_PATHS = ("/usr/lib/postgresql/15/bin/pgbench", "pgbench")
RETRY_START_S, RETRY_MAX_S = 0.5, 30.0  # as in task.js (and bench/loadclient/src/worker.rs)
NATIVE_DIR = ROOT / "bench" / "loadclient"  # the compiled client (--client native)
NATIVE_PROGRESS_RE = re.compile(
    r"loadclient: judging (\d+)/(\d+) s: acked (\d+), in flight (\d+), errors (\d+)")
REQUEST_TIMEOUT_S = 30  # the browser waits longer
JUDGMENT_COLUMNS = (
    "assignment_id, item_id, trial_id, chosen_id, chosen_side, left_stimulus_id, response_ms, "
    "client_uuid, created, client_created"
)


# --------------------------------------------------------------------------------------------------------
# Simulated workers
# --------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """What the simulated workers saw. ``acked`` maps uuid -> (token, position, choice) of every judgment
    the server acknowledged (200/201); latencies are per HTTP attempt that got a response.

    Two phases: arrival (every worker consents, reads its state, posts its device; spread over ``ramp``)
    and the judging window of ``duration`` s, which starts once all have arrived (``started``)."""

    clients: int = 0
    ramp: float = 0.0
    grace: float = 0.0
    t0: float = 0.0  # arrival phase start
    started: float = math.inf  # judging window start (all workers arrived)
    deadline: float = math.inf
    ended: float = 0.0
    arrived: int = 0
    acked: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    judge_latency: list[float] = field(default_factory=list)
    judge_at: list[float] = field(default_factory=list)  # monotonic time each judge_latency sample ended
    ack_at: list[float] = field(default_factory=list)  # monotonic time of each first ack
    other_latency: list[float] = field(default_factory=list)
    other_at: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    judge_posts: int = 0
    retries: int = 0
    replays: int = 0
    replay_mismatch: int = 0
    unacked: int = 0  # judgments abandoned at the hard stop without an ack
    assignments: int = 0
    completed: int = 0
    active_workers: set[int] = field(default_factory=set)
    cancelled: int = 0  # workers still waiting on a request when the run was cut off
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


class _Gone(Exception):
    """The assignment is no longer open (403/404): the page stops, so does the worker."""


async def _counted(res: Result, kind: str, send) -> tuple:
    """Run one HTTP attempt ``send()`` -> (status, body, Location), counting it in ``res`` (in flight,
    latency, HTTP errors)."""
    t0 = time.perf_counter()
    res.in_flight += 1
    res.peak_in_flight = max(res.peak_in_flight, res.in_flight)
    try:
        status, body, location = await send()
    finally:
        res.in_flight -= 1
    latency, at = (res.judge_latency, res.judge_at) if kind == "judge" else (res.other_latency, res.other_at)
    latency.append(time.perf_counter() - t0)
    at.append(time.monotonic())
    if status >= 400:
        res.errors[f"{kind} HTTP {status}"] += 1
    return status, body, location


async def _request(sess, method: str, url: str, res: Result, kind: str, **kw):
    """One aiohttp attempt; returns (status, json-or-text, Location) or raises the aiohttp/timeout error."""

    async def send():
        async with sess.request(method, url, allow_redirects=False, **kw) as r:
            body = await (r.json() if r.content_type == "application/json" else r.text())
            return r.status, body, r.headers.get("Location", "")

    return await _counted(res, kind, send)


class KeepAlive:
    """One persistent HTTP/1.1 connection for a worker's judge POSTs, as a browser tab keeps one.

    Requests are written by hand and answers parsed just enough (status line, Content-Length, body): about a
    fifth of aiohttp's CPU per request. The clients share the 2 cores with the server and PostgreSQL, so
    every millisecond they spend is one the server does not get; aiohttp still does the arrival (cookies,
    the CSRF form), which is a few requests per participant.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b""
                      ) -> tuple[int, bytes]:
        """(status, body); raises OSError, EOFError or TimeoutError (the connection is then closed)."""
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        msg = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{head}"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                self.writer.write(msg)
                header = await self.reader.readuntil(b"\r\n\r\n")
                lines = header.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                fields = {k.strip().lower(): v.strip()
                          for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                data = await self.reader.readexactly(int(fields.get("content-length", 0)))
        except (OSError, EOFError, TimeoutError, ValueError, IndexError):
            self.close()
            raise
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


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
        except (TimeoutError, aiohttp.ClientError, OSError, EOFError, ValueError) as e:
            res.errors[f"{kind} {type(e).__name__}"] += 1
        if time.monotonic() + backoff > res.hard_stop:
            return None, None, None
        res.retries += 1
        await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
        backoff = min(backoff * 2, RETRY_MAX_S)


async def _start(sess, base: str, slug: str, res: Result) -> tuple[str, list] | None:
    """Consent on /p/<slug>/ (GET form, POST with CSRF), read the state, post the device facts; returns
    (token, items) or None."""
    url = f"{base}/p/{slug}/"
    status, page, _ = await _with_retries(lambda: _request(sess, "GET", url, res, "entry"), res, "entry")
    if status != 200:
        return None
    m = CSRF_RE.search(page)
    if not m:
        res.errors["entry no CSRF field"] += 1
        return None
    data = {"consent": "yes", "csrfmiddlewaretoken": m.group(1)}
    status, _, location = await _with_retries(
        lambda: _request(sess, "POST", url, res, "consent", data=data, headers={"Referer": url}),
        res, "consent")
    if status != 302 or "/a/" not in location:
        return None
    token = location.rstrip("/").split("/")[-1]
    res.assignments += 1
    hdr = {"X-Assignment-Token": token}
    status, state, _ = await _with_retries(
        lambda: _request(sess, "GET", f"{base}/a/{token}/state", res, "state"), res, "state")
    if status != 200:
        return None
    await _with_retries(lambda: _request(sess, "POST", f"{base}/a/{token}/device", res, "device", headers=hdr,
                                         json={"viewport": [1600, 1000], "dpr": 1, "screen": [1920, 1080]}),
                        res, "device")
    return token, state["items"]


async def _judge(conn: KeepAlive, token: str, body: dict, res: Result) -> dict | None:
    """POST one judgment, retrying with the same uuid until answered; returns the stored judgment."""
    path, payload = f"/a/{token}/judge", json.dumps(body).encode()
    hdr = {"X-Assignment-Token": token, "Content-Type": "application/json"}

    async def send():
        status, data = await conn.request("POST", path, hdr, payload)
        return status, json.loads(data) if data.startswith(b"{") else data, ""

    async def attempt():
        res.judge_posts += 1
        return await _counted(res, "judge", send)

    status, data, _ = await _with_retries(attempt, res, "judge")
    if status is None:
        return None
    if status in (200, 201):
        return data["judgment"]
    if status in (403, 404):
        raise _Gone(status)
    return None  # 400/409: rejected, the page drops it too (counted in errors)


async def _judge_items(sess, conn: KeepAlive, base: str, token: str, items: list, wid: int, res: Result,
                       rng: random.Random, think: float, replay: float, images: bool) -> bool:
    """Judge the items one after the other until the deadline; True when all were judged."""
    done = 0
    for item in items:
        if images:
            for side in ("left", "right", "ref"):
                if item.get(side):
                    await _with_retries(lambda u=item[side]: _request(sess, "GET", base + u, res, "image"),
                                        res, "image")
        await asyncio.sleep(rng.expovariate(1 / think) if think > 0 else 0)
        if time.monotonic() >= res.deadline:
            return False
        body = {"uuid": str(uuid.uuid4()), "position": item["position"],
                "choice": rng.choice(("left", "right")), "response_ms": rng.randint(300, 4000),
                "client_time": None}
        stored = await _judge(conn, token, body, res)
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
            again = await _judge(conn, token, body, res)
            if again is None or (again["uuid"], again["choice"]) != (body["uuid"], body["choice"]):
                res.replay_mismatch += 1
    return done == len(items)


async def _worker(wid: int, base: str, slug: str, connector, res: Result, rng: random.Random,
                  think: float, replay: float, images: bool) -> None:
    import aiohttp

    await asyncio.sleep(rng.uniform(0, res.ramp))
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    u = urlsplit(base)
    conn = KeepAlive(u.hostname, u.port)
    arriving = True
    while arriving or time.monotonic() < res.deadline:
        jar = aiohttp.CookieJar(unsafe=True)  # a new browser profile = a new participant
        async with aiohttp.ClientSession(connector=connector, connector_owner=False, cookie_jar=jar,
                                         timeout=timeout) as sess:
            started = await _start(sess, base, slug, res)
            if arriving:
                arriving = False
                res.arrived += 1
                if res.arrived == res.clients:
                    res.go.set()
                await res.go.wait()
            if started is None:
                await asyncio.sleep(1)
                continue
            token, items = started
            try:
                if await _judge_items(sess, conn, base, token, items, wid, res, rng, think, replay, images):
                    status, _, _ = await _with_retries(lambda t=token: _request(
                        sess, "POST", f"{base}/a/{t}/complete", res, "complete",
                        headers={"X-Assignment-Token": t}), res, "complete")
                    res.completed += status == 200
            except _Gone:
                res.errors["assignment closed mid-run"] += 1
    conn.close()


async def simulate(base: str, slug: str, clients: int, duration: float, think: float = 1.5,
                   replay: float = 0.05, ramp: float = 20.0, grace: float = 30.0, images: bool = False,
                   seed: int = 0, progress: bool = True, during=None, arrival_limit: float = 300) -> Result:
    """Run ``clients`` simulated workers against ``base``: arrival over ``ramp`` s, then ``duration`` s of
    judging once all have arrived (or ``arrival_limit`` s passed), + ``grace`` s for retries in flight.

    ``during`` (optional) is an ``async def f(res)`` run alongside (the fault test injects faults there;
    ``await res.go.wait()`` waits for the judging window).
    """
    import aiohttp
    from tqdm import tqdm

    res = Result(clients=clients, ramp=ramp, grace=grace, t0=time.monotonic(), go=asyncio.Event())
    connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True)
    master = random.Random(seed)
    tasks = [asyncio.create_task(_worker(i, base, slug, connector, res, random.Random(master.random()), think,
                                         replay, images)) for i in range(clients)]
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
        await connector.close()
    res.ended = time.monotonic()
    return res


def build_native_client() -> Path:
    """Build bench/loadclient (``cargo build --release --offline``: it needs no crates) and return its
    binary; RuntimeError saying why when that cannot be done."""
    cargo = shutil.which("cargo") or next(
        (str(p) for p in (Path.home() / ".cargo" / "bin" / "cargo",) if p.exists()), None)
    if cargo is None:
        raise RuntimeError("the native client needs Rust's cargo (https://rustup.rs), found neither on PATH "
                           "nor in ~/.cargo/bin; or use --client python")
    done = subprocess.run([cargo, "build", "--release", "--offline", "--quiet", "--manifest-path",
                           str(NATIVE_DIR / "Cargo.toml")], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"building bench/loadclient failed ({cargo} build exited with "
                           f"{done.returncode}):\n" + (done.stderr or done.stdout).strip())
    return NATIVE_DIR / "target" / "release" / "loadclient"


_NATIVE_STATS = ("judge_posts", "retries", "replays", "replay_mismatch", "unacked", "assignments",
                 "completed", "arrived", "cancelled", "peak_in_flight")


def parse_native_result(text: str, clients: int, ramp: float, grace: float) -> Result:
    """The ``Result`` of a bench/loadclient result file (format: the top of its src/main.rs). Its times are
    seconds since the client started, so ``t0`` is 0 and every time in the Result is on that clock."""
    lines = text.splitlines()
    if not lines or lines[0] != "loadclient 1":
        raise ValueError(f"not a loadclient result (format 1): first line {lines[0] if lines else ''!r}")
    res = Result(clients=clients, ramp=ramp, grace=grace, t0=0.0)
    for n, line in enumerate(lines[1:], 2):
        tag, _, rest = line.partition(" ")
        f = rest.split()
        if tag == "lat":
            latency, at = ((res.judge_latency, res.judge_at) if f[0] == "judge"
                           else (res.other_latency, res.other_at))
            latency.append(float(f[1]))
            at.append(float(f[2]))
        elif tag == "ack":
            res.acked[f[0]] = (f[1], int(f[2]), f[3])
            res.ack_at.append(float(f[4]))
        elif tag == "err":
            res.errors[rest.partition(" ")[2]] += int(f[0])
        elif tag == "window":
            res.started, res.deadline = float(f[0]), float(f[1])
        elif tag == "ended":
            res.ended = float(f[0])
        elif tag == "active":
            res.active_workers = {int(x) for x in f}
        elif tag == "stat":
            for k, _, v in (x.partition("=") for x in f):
                if k in _NATIVE_STATS:
                    setattr(res, k, int(v))
        else:
            raise ValueError(f"loadclient result line {n}: unknown record {tag!r}")
    return res


def native_simulate(base: str, slug: str, clients: int, duration: float, think: float = 1.5,
                    replay: float = 0.05, ramp: float = 20.0, grace: float = 30.0, images: bool = False,
                    seed: int = 0, progress: bool = True, arrival_limit: float = 300, on_window=None,
                    binary: Path | None = None) -> Result:
    """``simulate`` done by the compiled client (bench/loadclient, built first unless ``binary`` is given):
    the same workers, requests, retries and counts, in another process.

    ``on_window(event, pid)`` (optional) is called with ``"start"`` and ``"end"`` as the judging window
    opens and closes (``pid``: the client's process, e.g. for CPU readings). The Result's times are seconds
    since the client started (``t0`` = 0); ``res.go`` is None (there is no ``during``)."""
    from tqdm import tqdm

    binary = binary or build_native_client()
    with tempfile.TemporaryDirectory(prefix="loadclient-") as tmp:
        out = Path(tmp) / "result.txt"
        cmd = [str(binary), "--base", base, "--slug", slug, "--clients", str(clients), "--duration",
               str(duration), "--think", str(think), "--replay", str(replay), "--ramp", str(ramp), "--grace",
               str(grace), "--seed", str(seed), "--arrival-limit", str(arrival_limit), "--out", str(out)]
        cmd += ["--images"] if images else []
        bar = None
        with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              bufsize=1) as proc:
            try:
                for line in proc.stderr:  # the client's protocol lines (top of its src/main.rs)
                    line = line.rstrip("\n")
                    m = NATIVE_PROGRESS_RE.fullmatch(line)
                    if line == "loadclient: window start":
                        if on_window:
                            on_window("start", proc.pid)
                        bar = tqdm(total=int(duration), unit="s", disable=not progress, desc="judging")
                    elif line == "loadclient: window end":
                        if on_window:
                            on_window("end", proc.pid)
                        if bar is not None:
                            bar.close()
                    elif m and bar is not None:
                        bar.update(int(m.group(1)) - bar.n)
                        bar.set_postfix(acked=int(m.group(3)), in_flight=int(m.group(4)),
                                        errors=int(m.group(5)))
                    else:  # anything else is the client's own message (a usage error, a panic)
                        print(line, file=sys.stderr, flush=True)
            finally:
                if bar is not None:
                    bar.close()
        if proc.returncode:
            raise RuntimeError(f"bench/loadclient exited with {proc.returncode} (its messages are above)")
        return parse_native_result(out.read_text(), clients, ramp, grace)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100, nearest rank) of ``values``; nan if empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


# --------------------------------------------------------------------------------------------------------
# Audit (from the database, after the run)
# --------------------------------------------------------------------------------------------------------


@dataclass
class Audit:
    stored: int
    acked: int
    lost: list[str]  # acknowledged but not stored
    unacknowledged_stored: int  # stored but never acknowledged (a client gave up at the hard stop)
    wrong_content: int  # stored answer differs from the acknowledged one
    duplicate_uuid: int
    duplicate_slot: int
    commits: int = 0  # distinct commit times of the stored judgments (a batch shares one)

    @property
    def ok(self) -> bool:
        """Every acknowledged judgment stored exactly once, with the acknowledged answer."""
        return (not self.lost and not self.wrong_content and not self.duplicate_uuid
                and not self.duplicate_slot and self.stored == self.acked + self.unacknowledged_stored)

    def line(self) -> str:
        return (f"stored {self.stored}, acknowledged {self.acked}, lost {len(self.lost)}, duplicates "
                f"{self.duplicate_uuid} (uuid) + {self.duplicate_slot} (slot), wrong answer "
                f"{self.wrong_content}, stored without ack {self.unacknowledged_stored}")

    def commits_line(self) -> str:
        return (f"stored in {self.commits} commits ({self.stored / max(self.commits, 1):.2f} judgments per "
                "commit: judgments posted together are stored by one statement, webapp/crowd/groupcommit.py)")


def audit(cursor, slug: str, res: Result) -> Audit:
    """Compare what the server acknowledged with what the database holds for experiment ``slug``."""
    cursor.execute(
        """SELECT j.client_uuid::text, a.token::text, i.position, j.chosen_side, j.item_id, j.created
           FROM crowd_judgment j JOIN crowd_assignment a ON a.id = j.assignment_id
           JOIN crowd_assignmentitem i ON i.id = j.item_id
           JOIN experiments_experiment e ON e.id = a.experiment_id WHERE e.slug = %s""", [slug])
    rows = cursor.fetchall()
    by_uuid = {r[0]: r for r in rows}
    lost = [u for u in res.acked if u not in by_uuid]
    wrong = sum(1 for u, (tok, pos, ch) in res.acked.items()
                if u in by_uuid and (by_uuid[u][1].replace("-", "") != tok.replace("-", "")
                                     or by_uuid[u][2] != pos or by_uuid[u][3] != ch))
    return Audit(stored=len(rows), acked=len(res.acked), lost=lost,
                 unacknowledged_stored=sum(1 for u in by_uuid if u not in res.acked), wrong_content=wrong,
                 duplicate_uuid=len(rows) - len(by_uuid),
                 duplicate_slot=len(rows) - len({r[4] for r in rows}), commits=len({r[5] for r in rows}))


# --------------------------------------------------------------------------------------------------------
# Raw INSERT baseline
# --------------------------------------------------------------------------------------------------------


def raw_insert_rate(db_url: str, connections: int, seconds: float) -> tuple[float, str]:
    """Single-row autocommit INSERTs/s into a copy of crowd_judgment (same indexes, no FKs); (rate, how)."""
    import psycopg2

    with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_raw_insert")
        cur.execute("CREATE TABLE bench_raw_insert (LIKE crowd_judgment INCLUDING DEFAULTS INCLUDING "
                    "IDENTITY INCLUDING INDEXES)")
        cur.execute("SHOW synchronous_commit")
        sync = cur.fetchone()[0]
    conn.close()
    stmt = (f"INSERT INTO bench_raw_insert ({JUDGMENT_COLUMNS}) VALUES ((random()*1e6)::int, "
            "(random()*1e15)::bigint, (random()*1e3)::int, (random()*1e3)::int, 'left', "
            "(random()*1e3)::int, 900, gen_random_uuid(), now(), now());\n")
    pgbench = next((p for p in PGBENCH_PATHS if shutil.which(p)), None)
    try:
        if pgbench:
            with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
                f.write(stmt)
            u = urlsplit(db_url)
            cmd = [pgbench, "-n", "-f", f.name, "-c", str(connections), "-j", str(min(connections, 2)),
                   "-T", str(int(seconds)), "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432),
                   "-U", u.username or "postgres", u.path.lstrip("/")]
            env = {**os.environ, **({"PGPASSWORD": u.password} if u.password else {})}
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
            os.unlink(f.name)
            rate = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))
            how = f"pgbench -c {connections} -j {min(connections, 2)} -T {int(seconds)}"
        else:  # the equivalent psycopg2 loop, one thread per connection
            import threading

            counts = [0] * connections
            stop = time.monotonic() + seconds

            def loop(k: int) -> None:
                c = psycopg2.connect(db_url)
                c.autocommit = True
                with c.cursor() as cu:
                    while time.monotonic() < stop:
                        cu.execute(stmt)
                        counts[k] += 1
                c.close()

            threads = [threading.Thread(target=loop, args=(k,)) for k in range(connections)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rate, how = sum(counts) / seconds, f"psycopg2 loop, {connections} threads, {seconds:.0f} s"
    finally:
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bench_raw_insert")
        conn.close()
    return rate, f"{how}, synchronous_commit={sync}"


# --------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(db_url: str, media: str, static: str, port: int, workers: int | None,
               threads: int | None = None) -> dict[str, str]:
    """Environment for manage.py / the server in production mode on plain-HTTP loopback."""
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
           "ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "0", "SECURE_COOKIES": "0",
           "DATABASE_URL": db_url, "MEDIA_ROOT": media, "STATIC_ROOT": static, "CROWD_RATE_LIMIT": "0",
           "WEB_BIND": f"127.0.0.1:{port}", "PYTHONPATH": str(ROOT)}
    if workers:
        env["WEB_WORKERS"] = str(workers)
    if threads:
        env["WEB_THREADS"] = str(threads)
    return env


def server_capacity(env: dict[str, str]) -> tuple[int, int]:
    """(workers, threads per worker) of the production server started with ``env``."""
    from webapp.serve import command

    cmd = command(env)
    return int(cmd[cmd.index("--workers") + 1]), int(cmd[cmd.index("--blocking-threads") + 1])


def start_server(env: dict[str, str], log_path: str, wait_s: float = 60) -> subprocess.Popen:
    """Start the server exactly as ``make serve-prod`` does (``webapp/serve.py``); return once it answers
    on WEB_BIND."""
    import urllib.request

    from webapp.serve import command

    log = open(log_path, "ab")
    proc = subprocess.Popen(command(env), cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://{env['WEB_BIND']}/static/crowd/task.css"
    stop = time.monotonic() + wait_s
    while time.monotonic() < stop:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; see {log_path}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the server did not answer within {wait_s} s; see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    """Graceful stop (SIGTERM to the master), then SIGKILL to its process group if needed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def worker_pids(master_pid: int) -> list[int]:
    """PIDs of the server's workers (children of its main process), from /proc."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master_pid:
                out.append(int(p.name))
    return sorted(out)


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


def _db_url(admin_url: str, name: str) -> str:
    u = urlsplit(admin_url)
    return urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000, help="simulated workers (default 1000)")
    ap.add_argument("--duration", type=float, default=60, help="seconds of judging (default 60)")
    ap.add_argument("--think", type=float, default=1.5, help="mean think time per judgment, s (default 1.5)")
    ap.add_argument("--replay", type=float, default=0.05, help="fraction of acks re-posted (default 0.05)")
    ap.add_argument("--ramp", type=float, default=20, help="arrivals spread over this many s (default 20)")
    ap.add_argument("--grace", type=float, default=30, help="s after the deadline for retries in flight")
    ap.add_argument("--images", action="store_true", help="also GET the 2-3 images of every trial")
    ap.add_argument("--client", choices=("python", "native"), default="python",
                    help="the simulated workers: python (asyncio in this process; default) or native "
                         "(bench/loadclient, compiled Rust, built with cargo: a fraction of the CPU)")
    ap.add_argument("--workers", type=int, default=None, help="server workers (default: webapp/serve.py)")
    ap.add_argument("--threads", type=int, default=None, help="threads per worker (default: webapp/serve.py)")
    ap.add_argument("--baseline-seconds", type=float, default=8, help="pgbench run length, s")
    ap.add_argument("--baseline-connections", default=None,
                    help="comma-separated pgbench connection counts; the first is the ratio's headline "
                         "(default: workers x threads, the most the server holds, then one per worker)")
    ap.add_argument("--admin-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                    help="a PostgreSQL URL allowed to CREATE/DROP DATABASE")
    ap.add_argument("--db", default="loadbench", help="scratch database (dropped and recreated)")
    ap.add_argument("--keep-db", action="store_true")
    a = ap.parse_args()
    if not a.admin_url.startswith("postgres"):
        sys.exit("error: --admin-url must be a PostgreSQL URL")
    try:
        wanted = [int(x) for x in a.baseline_connections.split(",")] if a.baseline_connections else []
        if min(wanted, default=1) < 1:
            raise ValueError
    except ValueError:
        sys.exit(f"error: --baseline-connections: expected positive integers, got {a.baseline_connections!r}")
    binary = None
    if a.client == "native":  # before anything else: a failed build should not cost a database setup
        try:
            binary = build_native_client()
        except RuntimeError as e:
            sys.exit(f"error: --client native: {e}")
    import psycopg2

    db_url = _db_url(a.admin_url, a.db)

    def admin(sql: str) -> None:
        c = psycopg2.connect(a.admin_url)
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute(sql)
        c.close()

    admin(f'DROP DATABASE IF EXISTS "{a.db}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{a.db}"')
    tmp = Path(tempfile.mkdtemp(prefix="loadbench-"))
    port = free_port()
    env = server_env(db_url, str(tmp / "media"), str(tmp / "static"), port, a.workers, a.threads)
    workers, threads = server_capacity(env)
    counts = wanted or list(dict.fromkeys([workers * threads, workers]))
    proc = None
    try:
        print(f"[1/4] scratch database {a.db}: migrate, load_demo, collectstatic", flush=True)
        for cmd in (["migrate", "-v0"], ["load_demo"], ["collectstatic", "--noinput", "-v0"]):
            subprocess.run([sys.executable, "manage.py", *cmd], cwd=ROOT, env=env, check=True,
                           capture_output=True)
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            cur.execute("UPDATE experiments_experiment SET trials_per_assignment = (SELECT count(*) FROM "
                        "experiments_trial t WHERE t.experiment_id = experiments_experiment.id AND "
                        "t.kind = 'normal') WHERE slug = 'demo' RETURNING trials_per_assignment")
            per_assignment = cur.fetchone()[0]
        conn.close()
        print(f"[2/4] raw INSERT baseline with {', '.join(map(str, counts))} connections; again after the "
              "run", flush=True)

        def baseline() -> dict[int, tuple[float, str]]:
            return {n: raw_insert_rate(db_url, n, a.baseline_seconds) for n in counts}

        before = baseline()
        load_before = os.getloadavg()
        print(f"[3/4] granian (webapp/serve.py) {workers} workers x {threads} threads on 127.0.0.1:{port}",
              flush=True)
        proc = start_server(env, str(tmp / "server.log"))
        print(f"[4/4] {a.clients} simulated workers ({a.client} client) for {a.duration:.0f} s", flush=True)
        cpu: dict[str, float] = {}  # CPU seconds per component over the judging window
        base = f"http://127.0.0.1:{port}"
        if a.client == "native":
            readings = {}

            def measure_cpu(event: str, client_pid: int) -> None:  # told by the client as the window opens
                reading = cpu_seconds(proc.pid, (client_pid,))  # and closes
                if event == "start":
                    readings["start"] = reading
                elif "start" in readings:
                    cpu.update(cpu_used(readings["start"], reading))

            res = native_simulate(base, "demo", a.clients, a.duration, a.think, a.replay, a.ramp, a.grace,
                                  a.images, on_window=measure_cpu, binary=binary)
        else:
            async def measure_cpu(res: Result) -> None:
                await res.go.wait()
                before = cpu_seconds(proc.pid)
                await asyncio.sleep(a.duration)
                cpu.update(cpu_used(before, cpu_seconds(proc.pid)))

            import uvloop  # the clients' event loop in C: less of the shared CPU for them

            res = uvloop.run(simulate(base, "demo", a.clients, a.duration, a.think, a.replay, a.ramp, a.grace,
                                       a.images, during=measure_cpu))
        load_after = os.getloadavg()
        stop_server(proc)
        after = baseline()
        # the disk's fsync time drifts: each ratio is taken against the faster of the two measurements
        raw = {n: max(before[n], after[n]) for n in counts}
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            report = audit(cur, "demo", res)
        conn.close()
    finally:
        if proc is not None:
            stop_server(proc)
        if not a.keep_db:
            admin(f'DROP DATABASE IF EXISTS "{a.db}" WITH (FORCE)')
        log = tmp / "server.log"
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        shutil.rmtree(tmp, ignore_errors=True)

    acked = sum(1 for t in res.ack_at if res.in_window(t))
    rate = acked / res.window_s
    lat = [x for x, t in zip(res.judge_latency, res.judge_at) if res.in_window(t)]
    arrival = [x for x, t in zip(res.other_latency, res.other_at) if t < res.started]
    other = [x for x, t in zip(res.other_latency, res.other_at) if t >= res.started]

    def pct(xs: list[float]) -> str:
        return ", ".join(f"p{q} {1000 * percentile(xs, q):.1f} ms" for q in (50, 95, 99))

    print()
    print(f"machine: {os.cpu_count()} cores; server, PostgreSQL and clients on the same machine (loopback)")
    print("clients: " + ("native (bench/loadclient: compiled Rust, one thread per simulated worker, blocking "
                         "sockets; CPU of its process and this one)" if a.client == "native" else
                         "python (asyncio on uvloop in this process: aiohttp for the arrival, KeepAlive for "
                         "the judge POSTs)"))
    print(f"server: granian, {workers} workers x {threads} threads, DEBUG=0, CROWD_RATE_LIMIT=0 (off), judge "
          f"shortcut {'on' if os.environ.get('CROWD_JUDGE_FASTPATH', '1') != '0' else 'off'}")
    print(f"arrival: {res.clients} simulated workers took an assignment over {res.started - res.t0:.1f} s "
          f"(spread over {res.ramp:.0f} s): consent page, consent POST, state, device = {len(arrival)} "
          f"requests, {pct(arrival)}")
    print(f"judging window: {res.window_s:.0f} s with all {res.clients} workers active "
          f"({len(res.active_workers)} made >= 1 judgment; peak {res.peak_in_flight} requests in flight); "
          f"think time exponential, mean {a.think} s; {per_assignment} normal trials per assignment; "
          f"assignments taken {res.assignments} in all, completed {res.completed}")
    print(f"judgments/s: {rate:.1f} ({acked} acknowledged in the window; {len(res.acked)} in all, incl. "
          f"retries finishing in the {res.grace:.0f} s grace period)")
    print(f"judge POST latency per attempt: {pct(lat)}, max {1000 * max(lat, default=0):.0f} ms "
          f"({len(lat)} attempts in the window)")
    print(f"judge POSTs {res.judge_posts} (retries {res.retries}, replays {res.replays}, replay answers "
          f"differing {res.replay_mismatch}); other requests in the window (new assignments, completions"
          f"{', images' if a.images else ''}): {len(other)}, {pct(other)}")
    print(f"errors: {sum(res.errors.values())} {dict(res.errors) if res.errors else ''}; judgments abandoned "
          f"without ack {res.unacked}; workers cut off waiting for an answer {res.cancelled}")
    for n in counts:
        print(f"raw PostgreSQL single-row INSERT, {n} connections: {raw[n][0]:.1f}/s ({raw[n][1]}; "
              f"before the run {before[n][0]:.1f}/s, after {after[n][0]:.1f}/s)")
    print("ratio judgments/s / raw INSERT/s = " + "; ".join(
        f"{rate / raw[n][0]:.3f} against {n} connections" for n in counts))
    if cpu and acked:
        per = {k: 1000 * v / acked for k, v in cpu.items()}
        rest = per["machine"] - per["server"] - per["clients"]
        busy = 100 * cpu["machine"] / (res.window_s * os.cpu_count())
        who = "loadclient + this process" if a.client == "native" else "this process"
        print(f"CPU per judgment in the window: {per['machine']:.2f} ms = server {per['server']:.2f} + "
              f"simulated workers {per['clients']:.2f} ({a.client} client: {who}) + PostgreSQL, the kernel "
              f"and the rest {rest:.2f} "
              f"(machine busy {busy:.0f} %)")
    print(f"load average (1 min) before the run {load_before[0]:.2f} (other jobs), at its end "
          f"{load_after[0]:.2f} (this benchmark's processes included), {os.cpu_count()} cores")
    print(report.commits_line())
    print(f"audit: {report.line()} -> {'OK' if report.ok else 'FAILED'}")
    if res.errors and tail:
        print("server log tail:\n  " + "\n  ".join(tail))
    if not report.ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
