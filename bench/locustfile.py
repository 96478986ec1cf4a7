"""The launch benchmark's participant, for Locust (``bench/launch.py`` runs it; it also runs alone):

    locust -f bench/locustfile.py --headless -H https://localhost:8443 -u 1000 -r 16.667 --run-time 160s \\
        --acked-file /tmp/acked.jsonl --images

One user is one participant who arrives once (the spawn rate is the arrival ramp: ``-u 1000 -r 16.667`` =
1,000 within 60 s), in a browser profile of its own (cookies, kept-alive connections; HTTPS with the
certificate unchecked, or checked against ``--ca-file``): the consent page, the consent POST with every
hidden field of the form + ``consent=yes``, Origin and Referer, the judging page (the assignment's state is
embedded in it), the device facts; then item after item: the trial's images first with ``--images`` (as
the page preloads them), a lognormal think time (mean ``--think`` s, sigma of the log 0.5), one judge POST
with a fresh uuid, re-sent with the same uuid after a timeout, a connection error, a 429 or a 5xx, waiting
0.5 s, 1 s, 2 s ... up to 30 s (as ``webapp/crowd/static/crowd/task.js``). ``--replay`` of the acknowledged
judgments are posted again (a lost ack), ``--reload`` of the participants reload the page once
mid-assignment, a finished assignment is completed. Then the user idles until the run ends (a user that
stopped would be spawned again during the ramp).

Request names (Locust's statistics): ``entry`` (consent POST and judging page), ``judge``, ``image``,
``other`` (consent page, device, reload, completion).

Judging stops ``--window`` s after the last arrival (the window judgments/s is taken over; the first
arrival in each Locust process starts its clock), retries ``--grace`` s later. Each Locust process
appends to ``--acked-file`` (or $LAUNCH_ACKED), one JSON object a line, written as it happens: every
acknowledged judgment ``{"uuid", "token", "position", "choice", "t"}`` (what the database audit compares
with), its window ``{"window": [start, end]}`` (epoch seconds) and each user's counters ``{"user":
{...}}`` when it ends.
"""

from __future__ import annotations

import html
import json
import math
import os
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import gevent
from locust import constant, events, task
from locust.contrib.fasthttp import FastHttpUser, FastResponse

HIDDEN_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
STATE_RE = re.compile(r'<script id="state" type="application/json">(.*?)</script>', re.S)
RETRY_START_S, RETRY_MAX_S = 0.5, 30.0  # as in task.js
THINK_SIGMA = 0.5  # lognormal think times: sigma of the log


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--acked-file", env_var="LAUNCH_ACKED", default="",
                        help="append acknowledged judgments, windows and user counters here (JSON lines)")
    parser.add_argument("--slug", default="demo", help="the study's slug (default demo)")
    parser.add_argument("--think", type=float, default=2.0, help="mean think time per trial, s (2.0)")
    parser.add_argument("--window", type=float, default=60.0, help="judging goes on this long after the "
                        "last arrival, s (60)")
    parser.add_argument("--grace", type=float, default=30.0, help="retries go on this long after, s (30)")
    parser.add_argument("--replay", type=float, default=0.05, help="fraction of acks posted again (0.05)")
    parser.add_argument("--reload", type=float, default=0.05, help="fraction of participants reloading the "
                        "page once (0.05)")
    parser.add_argument("--images", action="store_true", help="fetch every trial's images first")
    parser.add_argument("--ca-file", default="", help="check the site's certificate against this CA")


@dataclass(frozen=True)
class Clock:
    """This process's judging window (epoch seconds): from its first arrival + the ramp, ``window`` long."""

    end: float
    hard_stop: float


_clock: Clock | None = None
_out: int | None = None


def clock(opts) -> Clock:
    """The process's clock, started (and written out) by its first arrival."""
    global _clock
    if _clock is None:
        ramp = opts.num_users / opts.spawn_rate
        start = time.time() + ramp
        _clock = Clock(end=start + opts.window, hard_stop=start + opts.window + opts.grace)
        record(opts, {"window": [start, _clock.end]})
    return _clock


def record(opts, obj: dict) -> None:
    """Append one JSON line to the acked file (one write: lines from several processes never mix)."""
    global _out
    if not opts.acked_file:
        return
    if _out is None:
        _out = os.open(opts.acked_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_out, (json.dumps(obj) + "\n").encode())


class Gone(Exception):
    """The assignment is no longer open (403/404): the page stops, so does the participant."""


class Participant(FastHttpUser):
    """One participant of the launch (see the module docstring)."""

    wait_time = constant(0)
    network_timeout = connection_timeout = 30.0  # a browser waits longer; as the old launch bench
    concurrency = 6  # a browser's connections per host
    insecure = True  # the bench's self-signed certificate, unless --ca-file

    def __init__(self, environment) -> None:
        opts = environment.parsed_options
        if opts is not None and opts.ca_file:
            self.insecure = False
            self.ssl_context_factory = lambda: gevent.ssl.create_default_context(cafile=opts.ca_file)
        super().__init__(environment)
        self.opts = opts
        self.n: Counter = Counter()
        self.rng = random.Random()
        origin = urlsplit(self.host)
        self.origin = f"{origin.scheme}://{origin.netloc}"

    @task
    def participate(self) -> None:
        self.clock = clock(self.opts)
        try:
            self.n["arrived"] += 1
            entered = self.enter()
            if entered is None:
                self.n["entry failed"] += 1
            else:
                self.n["assignments"] += 1
                self.judge_all(*entered)
        except Gone:
            self.n["assignment closed"] += 1
        finally:
            record(self.opts, {"user": dict(self.n)})
        while True:  # arrive once
            gevent.sleep(3600)

    # ----- HTTP -----
    def request(self, method: str, path: str, name: str, **kw) -> FastResponse | None:
        """One request, sent again (same body) after a timeout, a connection error, 429 or a 5xx with doubling
        backoff; None when the next try would start after the hard stop."""
        backoff = RETRY_START_S
        while True:
            r = self.client.request(method, path, name=name, allow_redirects=False, **kw)
            if 0 < r.status_code < 500 and r.status_code != 429:
                return r
            if time.time() + backoff > self.clock.hard_stop:
                return None
            self.n["retries"] += 1
            gevent.sleep(backoff * self.rng.uniform(0.8, 1.2))
            backoff = min(2 * backoff, RETRY_MAX_S)

    def api(self, token: str, path: str, name: str, body: dict | None = None) -> FastResponse | None:
        """POST to the assignment's JSON API as the page does (token header, Origin)."""
        return self.request("POST", f"/a/{token}/{path}", name, json=body,
                            headers={"X-Assignment-Token": token, "Origin": self.origin})

    # ----- the page -----
    def enter(self) -> tuple[str, list[dict]] | None:
        """Consent, the judging page, the device facts: (token, items) or None."""
        url = f"/p/{self.opts.slug}/"
        page = self.request("GET", url, "other")
        if page is None or page.status_code != 200:
            return None
        form = {k: html.unescape(v) for k, v in HIDDEN_RE.findall(page.text)}
        r = self.request("POST", url, "entry", data=urlencode({**form, "consent": "yes"}),
                         headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": self.origin,
                                  "Referer": self.origin + url})
        location = urlsplit(r.headers.get("Location") or "").path if r is not None else ""
        if r is None or r.status_code != 302 or not location.startswith("/a/"):
            return None
        token = location.rstrip("/").rsplit("/", 1)[-1]
        items = self.items(token, "entry")
        if items is None:
            return None
        self.api(token, "device", "other", {"viewport": [1600, 1000], "dpr": 1, "screen": [1920, 1080]})
        return token, items

    def items(self, token: str, name: str) -> list[dict] | None:
        """GET the judging page and read the items from the state embedded in it."""
        r = self.request("GET", f"/a/{token}/", name)
        m = STATE_RE.search(r.text) if r is not None and r.status_code == 200 else None
        return json.loads(m.group(1))["items"] if m else None

    def judge(self, token: str, body: dict) -> dict | None:
        """POST one judgment until answered; the stored judgment, or None (rejected, or the hard stop)."""
        r = self.api(token, "judge", "judge", body)
        if r is None:
            return None
        if r.status_code in (200, 201):
            return r.json()["judgment"]
        if r.status_code in (403, 404):
            raise Gone(r.status_code)
        self.n["rejected"] += 1  # 400/409: the page drops it too
        return None

    def judge_all(self, token: str, items: list[dict]) -> None:
        """Judge the unanswered items one after the other until the window ends; complete when all are."""
        o, rng, n = self.opts, self.rng, self.n
        reload_at = rng.randrange(1, len(items)) if len(items) > 1 and rng.random() < o.reload else None
        mu = math.log(o.think) - THINK_SIGMA ** 2 / 2 if o.think > 0 else 0.0  # lognormal, mean o.think
        k = done = 0
        while k < len(items):
            item = items[k]
            k += 1
            if item.get("answered"):
                done += 1
                continue
            if o.images:  # the page preloads the trial's images before it shows it
                for side in ("left", "right", "ref"):
                    if item.get(side):
                        self.request("GET", item[side], "image")
            gevent.sleep(rng.lognormvariate(mu, THINK_SIGMA) if o.think > 0 else 0)
            if time.time() >= self.clock.end:
                return
            body = {"uuid": str(uuid.uuid4()), "position": item["position"],
                    "choice": rng.choice(("left", "right")), "response_ms": rng.randint(300, 4000),
                    "client_time": None}
            stored = self.judge(token, body)
            if stored is None:
                n["unacked"] += 1
                continue
            record(o, {"uuid": body["uuid"], "token": token, "position": body["position"],
                       "choice": stored["choice"], "t": time.time()})
            n["acked"] += 1
            done += 1
            if (stored["uuid"], stored["choice"]) != (body["uuid"], body["choice"]):
                n["ack differs from the answer sent"] += 1
            if rng.random() < o.replay:  # the ack was lost: the page sends the same judgment again
                n["replays"] += 1
                again = self.judge(token, body)
                if again is None or (again["uuid"], again["choice"]) != (body["uuid"], body["choice"]):
                    n["replay answered differently"] += 1
            if k == reload_at:  # the participant reloads the page: resume from its state
                n["reloads"] += 1
                fresh = self.items(token, "other")
                if fresh is not None:
                    items, k, done = fresh, 0, 0
        if done == len(items):
            r = self.api(token, "complete", "other")
            n["completed"] += r is not None and r.status_code == 200
