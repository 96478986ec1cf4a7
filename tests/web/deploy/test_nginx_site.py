"""The production set-up as a whole: nginx from the shipped site file (deploy/nginx/lab.conf, with only its
paths, ports and a self-signed certificate changed), the production server (``webapp/serve.py``) and the
task worker behind it, as deploy/systemd starts them. A participant judges a whole assignment in Chromium
over HTTPS; the stimulus images come from nginx's internal location after Django authorised them
(X-Accel-Redirect) and tell nothing apart; the internal location is unreachable; a slow request body is
cut off by nginx while the server stays responsive."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.db import connection

from tests.web.chromium import chromium, needs_chromium
from webapp import harness

ROOT = Path(__file__).resolve().parents[3]
THREADS = 4  # one worker with few threads: slow bodies reaching it would hold them all

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    needs_chromium,
    pytest.mark.skipif(not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")),
                       reason="needs Debian nginx-light (make browser)"),
]


@pytest.fixture
def deployed(transactional_db, experiment_factory, settings, tmp_path):
    """(site, experiment, served dir, certificate): nginx (shipped site) → granian → PostgreSQL, worker on."""
    exp = experiment_factory(slug="deployed")
    media, static = Path(settings.MEDIA_ROOT), tmp_path / "static"
    port = harness.free_port()
    env = {**harness.server_env(harness.db_url(connection.settings_dict), str(media), str(static), port,
                                workers=1, threads=THREADS),
           "SECURE_SSL_REDIRECT": "1", "SECURE_COOKIES": "1", "CROWD_TRUSTED_PROXY_HOPS": "1",
           "SERVED_X_ACCEL_REDIRECT": "/_served/", "WEB_BUFFERING_PROXY": "1"}
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env,
                   check=True)
    server = harness.start_server(env, str(tmp_path / "server.log"))
    worker = subprocess.Popen([sys.executable, "manage.py", "db_worker", "--no-reload"], cwd=ROOT, env=env,
                              stdout=open(tmp_path / "worker.log", "ab"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    cert, key = harness.self_signed(tmp_path)
    site = harness.start_site(tmp_path, [port], str(static), str(media), cert, key)
    try:
        yield site, exp, media / "served", cert
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
    finally:
        harness.stop_nginx(site.proc)
        worker.terminate()
        worker.wait(30)
        harness.stop_server(server)


def test_participant_over_https_and_the_images_through_nginx(deployed, monkeypatch):
    from webapp.crowd.models import Assignment

    site, exp, served, cert = deployed
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    images: list[dict[str, str]] = []
    with chromium() as browser:
        ctx = browser.new_context(ignore_https_errors=True)  # the test's own self-signed certificate
        page = ctx.new_page()
        page.on("response", lambda r: images.append(r.all_headers()) if "/img/" in r.url else None)
        page.goto(f"{site.https}/p/{exp.slug}/")
        page.check("#consent")
        page.click("#start")
        page.wait_for_selector("#begin:not([disabled])")
        page.click("#begin")
        while True:
            page.wait_for_selector("#trial[data-ready='1'], #finishing:not([hidden])", timeout=20000)
            if page.is_visible("#finishing"):
                break
            practice = page.text_content("#phase") == "Practice:"
            page.keyboard.press("ArrowLeft")
            if practice:
                page.wait_for_function("document.getElementById('feedback').textContent.length > 0")
        page.wait_for_url("**/done", timeout=20000)
        assert page.text_content("#code") == "CODE-123"
        cookies = {c["name"]: c for c in ctx.cookies(site.https)}
    a = Assignment.objects.get(experiment=exp)
    assert a.state == "completed" and a.judgments.count() == a.items.count() > 0
    assert cookies["sessionid"]["secure"] and cookies["csrftoken"]["secure"]  # TLS end to end
    assert images and all(h.get("content-type") == "image/png" for h in images)

    # The three images of a trial, fetched as the page does, through nginx's internal location.
    http = requests.Session()
    http.verify, http.trust_env = str(cert), False  # not the environment's CA bundle: our certificate
    trial = [http.get(f"{site.https}/a/{a.token}/img/1/{side}") for side in ("left", "right", "ref")]
    assert [r.status_code for r in trial] == [200, 200, 200]
    for r in trial:
        assert not {"ETag", "Last-Modified", "X-Accel-Redirect"} & set(r.headers)
        assert r.headers["Cache-Control"] == "private, max-age=86400, no-transform"
        assert r.headers["Content-Type"] == "image/png" and r.headers.get("Server") == "nginx"
        assert r.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    same = [{k: v for k, v in r.headers.items() if k.lower() not in ("date", "content-disposition")}
            for r in trial]
    assert same[0] == same[1] == same[2]  # nothing tells one image of the trial from another
    assert len({len(r.content) for r in trial}) == 1
    name = next(served.glob("*.png")).name
    # the internal location is not reachable from outside, nor listed; a client's own X-Accel-Redirect
    # header is nothing to nginx
    assert http.get(f"{site.https}/_served/{name}").status_code == 404
    assert http.get(f"{site.https}/_served/").status_code == 404
    assert http.get(f"{site.https}/media/served/{name}").status_code == 404
    front = http.get(f"{site.https}/", headers={"X-Accel-Redirect": f"/_served/{name}"})
    assert front.status_code == 200 and b"Perceptual image quality lab" in front.content
    # a stimulus the assignment does not show is 404 through nginx too
    assert http.get(f"{site.https}/a/{a.token}/img/999/left").status_code == 404
    assert http.get(f"{site.https}/a/{a.token}/img/1/top").status_code == 404
    # static files from nginx, cached for good; plain HTTP goes to HTTPS
    css = http.get(f"{site.https}/static/crowd/task.css")
    assert css.status_code == 200 and "immutable" in css.headers["Cache-Control"]
    plain = requests.get(f"{site.http}/p/{exp.slug}/", allow_redirects=False)
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")


def _tls(site_url: str, cert: Path) -> ssl.SSLSocket:
    host, port = site_url.removeprefix("https://").split(":")
    ctx = ssl.create_default_context(cafile=str(cert))
    return ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=30), server_hostname=host)


def test_slow_bodies_are_cut_off_by_nginx_and_the_server_stays_responsive(deployed):
    site, exp, _, cert = deployed
    host = site.https.removeprefix("https://")
    head = (f"POST /p/{exp.slug}/ HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded"
            f"\r\nContent-Length: 2000\r\n\r\n").encode()
    slow = []
    for _ in range(THREADS * 3):  # three times the server's threads
        s = _tls(site.https, cert)
        s.sendall(head + b"consent=yes&" + b"x" * 900)
        slow.append(s)
    t0 = time.monotonic()
    for _ in range(5):  # nginx holds the half bodies: the server answers everyone else at once
        t = time.monotonic()
        r = requests.get(f"{site.https}/p/{exp.slug}/", verify=str(cert), timeout=5)
        assert r.status_code == 200 and time.monotonic() - t < 2
    answers = []
    for s in slow:  # client_body_timeout (10 s): nginx ends each slow request
        s.settimeout(max(1.0, 20 - (time.monotonic() - t0)))
        try:
            answers.append(s.recv(200))
        except (TimeoutError, ssl.SSLError, ConnectionError) as exc:
            answers.append(repr(exc).encode())
        finally:
            s.close()
    took = time.monotonic() - t0
    assert 9 < took < 20
    assert all(a == b"" or a.startswith(b"HTTP/1.1 408") for a in answers), answers[:3]
