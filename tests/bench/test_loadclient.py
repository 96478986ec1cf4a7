"""bench/loadclient (the compiled simulated workers: ``bench/load.py --client native``) against a fake site.

The fake speaks the judging site's protocol as the client sees it (consent page with a CSRF cookie and
form field, consent POST -> 302 to /a/<token>/, state, device, judge, complete) on a threaded stdlib HTTP
server, and injects faults: every 4th new judgment is answered 503 once, and the 2nd assignment is
closed (403) after 2 judgments. The test checks the client's side of the contract: cookies, CSRF and
headers, retries with the same body, replays, a closed assignment, completions and new participants,
and that ``native_simulate``'s Result is exactly what the fake stored. No PostgreSQL and no Django
server: a few seconds once cargo has built the client (skipped where there is no cargo).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.benchload import bench_load

ITEMS = 5  # items per assignment
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def load():
    mod = bench_load()
    if not (shutil.which("cargo") or (Path.home() / ".cargo" / "bin" / "cargo").exists()):
        pytest.skip("Rust's cargo is not installed (bench/loadclient is built with it)")
    mod.native_binary = mod.build_native_client()  # a build failure fails the test
    return mod


class Site:
    """The fake site's state; every handler thread goes through ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.assignments: dict[str, dict] = {}  # token -> {"judged": {position: uuid}, "closed": bool}
        self.stored: dict[str, tuple[str, int, str]] = {}  # uuid -> (token, position, choice)
        self.bodies: dict[str, set[bytes]] = {}  # uuid -> every judge body posted with it
        self.new_judgments = 0
        self.failed_once: set[str] = set()  # uuids answered 503 once
        self.judge_requests = self.duplicates = self.closed_answers = self.completed = 0
        self.problems: list[str] = []  # broken expectations, reported by the test


def _handler(site: Site, base: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as granian

        def log_message(self, *args) -> None:
            pass

        def problem(self, what: str) -> None:
            with site.lock:
                site.problems.append(f"{self.command} {self.path}: {what}")

        def answer(self, status: int, body: bytes = b"", ctype: str = "application/json", headers=()):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def cookies(self) -> dict[str, str]:
            pairs = (c.strip().partition("=") for c in self.headers.get("Cookie", "").split(";") if c.strip())
            return {k: v for k, _, v in pairs}

        def do_GET(self) -> None:
            if self.path == "/p/demo/":
                if self.cookies():
                    self.problem("a new participant sent cookies")
                token = uuid.uuid4().hex
                html = f'<form><input type="hidden" name="csrfmiddlewaretoken" value="F{token}">'
                return self.answer(200, html.encode(), "text/html; charset=utf-8",
                                   [("Set-Cookie", f" csrftoken={token}; Path=/; SameSite=Lax")])
            m = re.fullmatch(r"/a/([0-9a-f-]{36})/state", self.path)
            if m and m.group(1) in site.assignments:
                if "sessionid" not in self.cookies():
                    self.problem("state without the session cookie")
                items = [{"position": p, "left": f"/a/{m.group(1)}/img/{p}/left", "ref": None,
                          "answered": None} for p in range(ITEMS)]
                return self.answer(200, json.dumps({"state": "active", "items": items}).encode())
            self.answer(404, b'{"error": "not found"}')

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/p/demo/":
                form = dict(x.partition("=")[::2] for x in body.decode().split("&"))
                csrf = self.cookies().get("csrftoken", "")
                if (not csrf or form.get("csrfmiddlewaretoken") != "F" + csrf or form.get("consent") != "yes"
                        or self.headers.get("Referer") != f"{base}/p/demo/"
                        or self.headers.get("Content-Type") != "application/x-www-form-urlencoded"):
                    self.problem(f"consent refused: {form} {dict(self.headers)}")
                    return self.answer(403, b"CSRF", "text/html")
                token = str(uuid.uuid4())
                with site.lock:
                    site.assignments[token] = {"judged": {}, "closed": False, "n": len(site.assignments)}
                return self.answer(302, b"", "text/html", [("Location", f"/a/{token}/"),
                                                           ("Set-Cookie", "sessionid=s1; HttpOnly; Path=/")])
            m = re.fullmatch(r"/a/([0-9a-f-]{36})/(device|judge|complete)", self.path)
            a = site.assignments.get(m.group(1)) if m else None
            if a is None:
                return self.answer(404, b'{"error": "unknown assignment"}')
            token, action = m.groups()
            if self.headers.get("X-Assignment-Token") != token:
                self.problem("missing X-Assignment-Token")
                return self.answer(403, b'{"error": "token"}')
            if action == "device":
                if json.loads(body) != {"viewport": [1600, 1000], "dpr": 1, "screen": [1920, 1080]}:
                    self.problem(f"device body {body!r}")
                return self.answer(200, b'{"status": "ok"}')
            if action == "complete":
                with site.lock:
                    done = len(a["judged"]) == ITEMS
                    site.completed += done
                return self.answer(*((200, b'{"code": "X"}') if done else (409, b'{"error": "not yet"}')))
            self.judge(token, a, body)

        def judge(self, token: str, a: dict, body: bytes) -> None:
            v = json.loads(body)
            fields = {"uuid", "position", "choice", "response_ms", "client_time"}
            if (self.headers.get("Content-Type") != "application/json" or set(v) != fields
                    or not UUID4.fullmatch(v["uuid"])
                    or v["choice"] not in ("left", "right") or not 300 <= v["response_ms"] <= 4000
                    or v["client_time"] is not None or v["position"] not in range(ITEMS)):
                self.problem(f"judge body {body!r}")
                return self.answer(400, b'{"error": "bad"}')
            u = v["uuid"]
            with site.lock:
                site.judge_requests += 1
                site.bodies.setdefault(u, set()).add(body)
                if a["closed"]:
                    site.closed_answers += 1
                    status, answer = 403, {"error": "this assignment is expired"}
                elif u in site.stored:
                    site.duplicates += 1
                    status, answer = 200, {"status": "duplicate"}
                elif v["position"] in a["judged"]:
                    status, answer = 409, {"error": "judged"}
                elif (site.new_judgments + 1) % 4 == 0 and u not in site.failed_once:
                    site.failed_once.add(u)
                    status, answer = 503, {"error": "send it again"}
                else:
                    site.new_judgments += 1
                    site.stored[u] = (token, v["position"], v["choice"])
                    a["judged"][v["position"]] = u
                    a["closed"] = a["n"] == 1 and len(a["judged"]) == 2  # the 2nd assignment closes
                    status, answer = 201, {"status": "created"}
            if status in (200, 201):
                token_, position, choice = site.stored[u]
                answer["judgment"] = {"uuid": u, "position": position, "choice": choice, "response_ms": 1}
            self.answer(status, json.dumps(answer).encode())

    return Handler


@pytest.fixture
def site():
    state = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), None)
    server.daemon_threads = True
    base = f"http://127.0.0.1:{server.server_address[1]}"
    server.RequestHandlerClass = _handler(state, base)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base, state
    server.shutdown()
    server.server_close()


def test_native_client_against_a_fake_site(load, site):
    base, s = site
    events = []
    res = load.native_simulate(base, "demo", clients=4, duration=3, think=0.04, replay=0.3, ramp=0.3,
                               grace=5, progress=False, seed=1, binary=load.native_binary,
                               on_window=lambda event, pid: events.append(event))
    assert s.problems == []
    assert events == ["start", "end"]
    assert res.arrived == 4 and res.cancelled == 0 and res.active_workers == {0, 1, 2, 3}
    assert res.t0 == 0 < res.started < res.deadline <= res.ended
    assert res.deadline - res.started == pytest.approx(3, abs=1e-3)
    # every judgment the site stored was acknowledged with what it stored, and nothing else
    assert res.acked == s.stored and res.unacked == 0
    assert len(res.ack_at) == len(res.acked) and max(res.ack_at) < res.deadline + 5
    # each 503 was retried with the same body; replays re-sent the same body too
    assert len(s.failed_once) >= 3 and res.retries == len(s.failed_once)
    assert all(len(b) == 1 for b in s.bodies.values())
    assert res.replays > 0 and res.replay_mismatch == 0 and s.duplicates == res.replays
    assert res.judge_posts == s.judge_requests == len(res.judge_latency)
    # the closed assignment ended its participant, who came back as a new one
    assert s.closed_answers == 1 and res.errors.pop("assignment closed mid-run") == 1
    assert res.errors.pop("judge HTTP 403") == 1
    assert res.errors == {"judge HTTP 503": len(s.failed_once)}
    assert res.assignments == len(s.assignments) > 4
    assert res.completed == s.completed >= 4
    # arrival: entry, consent, state, device per assignment, and the completions
    assert len(res.other_latency) == 4 * len(s.assignments) + res.completed


def test_native_client_rejects_bad_arguments(load):
    bad = subprocess.run([str(load.native_binary), "--base", "http://127.0.0.1:1", "--slug", "demo",
                          "--clients", "0", "--duration", "1", "--out", "/dev/null"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert "error: --clients: expected 1 to 100000, got 0" in bad.stderr
