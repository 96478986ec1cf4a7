"""Slow clients against the real production server (``python -m webapp.serve``: granian, DEBUG=0).

Clients that send half a request body must not freeze the pages (the body is read before the request
takes a view slot), clients that never finish their headers are disconnected (WEB_HEADER_TIMEOUT_MS),
and the server refuses to start unless a body-buffering proxy is declared (granian has no body timeout,
so enough slow bodies would hold every thread without one): ``webapp/serve.py``, README Production.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from webapp import harness

ROOT = Path(__file__).resolve().parents[3]
THREADS = 32  # one worker: the slow clients below hold 24 of its threads


def server_env(media: Path, static: Path, port: int, **extra: str) -> dict[str, str]:
    env = harness.server_env(harness.db_url(connection.settings_dict), str(media), str(static), port,
                             workers=1, threads=THREADS)
    return {**env, "WEB_BUFFERING_PROXY": "1", "WEB_HEADER_TIMEOUT_MS": "2000", **extra}


def get(url: str, timeout: float = 5) -> tuple[int, float]:
    """(status, seconds) of a GET."""
    t = time.monotonic()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        r.read()
        return r.status, time.monotonic() - t


@pytest.fixture
def prod_server(transactional_db, live_experiment, settings, tmp_path) -> Iterator[tuple[int, str]]:
    """``python -m webapp.serve`` on the test database: (port, experiment slug)."""
    port = harness.free_port()
    env = server_env(Path(settings.MEDIA_ROOT), tmp_path / "static", port)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env,
                   check=True)
    log = open(tmp_path / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "webapp.serve"], cwd=ROOT, env=env, stdout=log,
                            stderr=log, start_new_session=True)
    try:
        stop = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text(errors="replace")[-2000:]
            try:
                get(f"http://127.0.0.1:{port}/static/crowd/task.css", timeout=2)
                break
            except OSError:
                assert time.monotonic() < stop, "the server did not answer"
                time.sleep(0.3)
        yield port, live_experiment.slug
    finally:
        harness.stop_server(proc)
        log.close()


def half_bodies(port: int, path: str, n: int) -> list[socket.socket]:
    """``n`` connections that each send headers and half of a form body, then nothing (with a CSRF cookie,
    so that Django's CSRF check waits for the form instead of refusing at once)."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Cookie: csrftoken={'a' * 32}\r\nContent-Length: 2000\r\n\r\n").encode()
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(head + b"consent=yes&x=" + b"a" * 986)
        socks.append(s)
    return socks


def closed_within(s: socket.socket, seconds: float) -> bool:
    """True if the server closes (or resets) ``s`` within ``seconds``."""
    s.settimeout(seconds)
    try:
        while s.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_half_sent_bodies_do_not_freeze_the_pages(prod_server):
    port, slug = prod_server
    base = f"http://127.0.0.1:{port}"
    socks = half_bodies(port, f"/p/{slug}/", 12) + half_bodies(port, "/lab/login/", 12)
    try:
        time.sleep(1)  # every one of them is waiting for the rest of its body now
        for path in (f"/p/{slug}/", "/lab/login/", f"/p/{slug}/"):
            status, took = get(base + path)
            assert status == 200 and took < 3, (path, status, took)
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_half_sent_headers_are_disconnected(prod_server):
    port, slug = prod_server
    socks = []
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /p/" + slug.encode() + b"/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        socks.append(s)
    try:
        assert get(f"http://127.0.0.1:{port}/p/{slug}/")[0] == 200
        t = time.monotonic()
        assert all(closed_within(s, max(0.1, 6 - (time.monotonic() - t))) for s in socks)
    finally:
        for s in socks:
            s.close()


def test_server_refuses_to_start_without_a_buffering_proxy(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WEB_BUFFERING_PROXY"}
    r = subprocess.run([sys.executable, "-m", "webapp.serve"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "WEB_BUFFERING_PROXY=1" in r.stderr and len(r.stderr) < 400, r.stderr


def test_make_serve_prod_refuses_before_touching_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WEB_BUFFERING_PROXY"}
    env.update(DATABASE_URL="postgres://nobody@127.0.0.1:1/none", STATIC_ROOT=str(tmp_path / "static"))
    r = subprocess.run(["make", "-s", "-o", "venv", "serve-prod"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "WEB_BUFFERING_PROXY=1" in r.stderr, (r.stdout, r.stderr)
    assert not (tmp_path / "static").exists()  # it stopped before collectstatic
