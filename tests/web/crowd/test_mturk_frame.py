"""MTurk as MTurk shows a HIT: the study link inside a frame on another site, third-party cookies blocked.

An outer page on another site (``http://127.0.0.2:PORT``, cross-site to the live server on ``localhost``)
frames the HIT URL with ``turkSubmitTo`` pointing at itself, as MTurk's worker site does, and records the
``POST /mturk/externalSubmit`` the completion page sends. Chromium runs with third-party cookies blocked
(``--test-third-party-cookie-phaseout``); each test checks that the frame really gets no cookie.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--test-third-party-cookie-phaseout"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian chromium (make browser)"),
]

OUTER_HOST = "127.0.0.2"  # another site than the live server's localhost: the frame is cross-site


class _Outer(BaseHTTPRequestHandler):
    """MTurk's side: ``/hit?src=URL`` frames the HIT; ``POST /mturk/externalSubmit`` is recorded."""

    submitted: list[dict[str, list[str]]]

    def do_GET(self):  # noqa: N802 (http.server's naming)
        src = parse_qs(self.path.partition("?")[2]).get("src", [""])[0]
        body = (f'<!doctype html><title>HIT</title><iframe name="hit" id="hit" src="{src}" '
                'width="1000" height="800"></iframe>').encode()
        self._answer(200, body)

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if self.path.startswith("/mturk/externalSubmit"):
            self.server.submitted.append(parse_qs(self.rfile.read(length).decode()))
            return self._answer(200, b"<p id='turk-thanks'>HIT submitted</p>")
        self._answer(404, b"not found")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def outer():
    with socket.socket() as s:
        s.bind((OUTER_HOST, 0))
        port = s.getsockname()[1]
    server = ThreadingHTTPServer((OUTER_HOST, port), _Outer)
    server.submitted = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, f"http://{OUTER_HOST}:{port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def mturk_site(settings, outer):
    """The outer page stands in for MTurk's worker site: it may frame the study and receive the submit."""
    _, origin = outer
    settings.CROWD_MTURK_FRAME_ANCESTORS = [origin]
    settings.CROWD_MTURK_SUBMIT_HOSTS = [origin]
    return origin


def _open_hit(page, origin: str, hit_url: str):
    """The outer page framing ``hit_url``; returns the frame once its document has loaded."""
    page.goto(f"{origin}/hit?" + urlencode({"src": hit_url}))
    frame = page.frame(name="hit")
    frame.wait_for_load_state()
    return frame


def _no_cookies_in_frame(frame, page, live_url: str) -> None:
    """Third-party cookies are blocked: the frame can set none, and the browser holds none of the site's."""
    assert frame.evaluate("() => { document.cookie = 'probe=1; path=/'; return document.cookie; }") == ""
    assert page.context.cookies(live_url) == []


def _judge_in_frame(frame, page, stop_after: int | None = None, answered: int = 0) -> int:
    """Click through the trials inside the frame (alternating sides), from ``answered`` judged items on;
    stops after ``stop_after`` clicks or at the end. Returns how many items are judged."""
    done = answered
    while stop_after is None or done - answered < stop_after:
        frame.wait_for_selector("#trial[data-ready='1'], #finishing:not([hidden])", timeout=20000)
        if frame.is_visible("#finishing"):
            break
        assert frame.get_attribute("#trial", "data-position") == str(done)  # the next unanswered item
        practice = frame.text_content("#phase") == "Practice:"
        frame.click("#left" if done % 2 == 0 else "#right")
        done += 1
        if practice:
            frame.wait_for_function("document.getElementById('feedback').textContent.length > 0")
    return done


def _consent(frame) -> None:
    frame.check("#consent")
    frame.click("#start")
    frame.wait_for_selector("#begin:not([disabled])")
    frame.click("#begin")


def test_hit_in_frame_with_third_party_cookies_blocked(
        live_server, transactional_db, experiment_factory, browser, outer, mturk_site):
    """Consent, every trial, a reload of the HIT mid-assignment, the submit back to MTurk: all inside the
    cross-site frame, with no cookie at all."""
    from webapp.crowd.models import Assignment

    server, origin = outer
    exp = experiment_factory(slug="framed-hit", platform="mturk")
    hit = f"{live_server.url}/p/{exp.slug}/?" + urlencode(
        {"assignmentId": "AS-FRAME", "hitId": "HIT-1", "workerId": "WK-FRAME", "turkSubmitTo": origin})
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    page = ctx.new_page()
    frame = _open_hit(page, origin, hit)
    frame.wait_for_selector("#consent-form")
    _no_cookies_in_frame(frame, page, live_server.url)
    _consent(frame)
    judged = _judge_in_frame(frame, page, stop_after=3)
    # The worker reloads MTurk's page: the frame opens the HIT URL again and resumes at the next item.
    page.reload()
    frame = page.frame(name="hit")  # a returning worker goes straight back to the trials
    judged = _judge_in_frame(frame, page, answered=judged)
    frame.wait_for_selector("#submit-button", timeout=20000)
    assert frame.text_content("#code") == "CODE-123"
    _no_cookies_in_frame(frame, page, live_server.url)
    frame.click("#submit-button")
    frame.wait_for_selector("#turk-thanks")
    assert server.submitted == [{"assignmentId": ["AS-FRAME"], "completion_code": ["CODE-123"]}]
    a = Assignment.objects.get(experiment=exp)
    assert (a.mturk_assignment_id, a.hit_id, a.participant.platform_id) == ("AS-FRAME", "HIT-1", "WK-FRAME")
    assert a.state == "completed" and a.judgments.count() == a.items.count() == judged
    ctx.close()


def test_preview_in_frame_stores_nothing(
        live_server, transactional_db, experiment_factory, browser, outer, mturk_site):
    from webapp.crowd.models import Assignment, Participant

    _, origin = outer
    exp = experiment_factory(slug="framed-preview", platform="mturk")
    hit = f"{live_server.url}/p/{exp.slug}/?" + urlencode(
        {"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "HIT-1", "turkSubmitTo": origin})
    page = browser.new_page()
    frame = _open_hit(page, origin, hit)
    frame.wait_for_selector("#preview")
    assert frame.query_selector("#consent-form") is None
    _no_cookies_in_frame(frame, page, live_server.url)
    assert not Participant.objects.exists() and not Assignment.objects.exists()


def test_frame_refused_on_a_site_mturk_is_not(
        live_server, transactional_db, experiment_factory, browser, outer, settings):
    """Framing is allowed to MTurk's sites only: framed by any other site, the page is not drawn."""
    _, origin = outer
    settings.CROWD_MTURK_SUBMIT_HOSTS = [origin]  # the link itself is valid; only the framing site is wrong
    exp = experiment_factory(slug="framed-elsewhere", platform="mturk")
    hit = f"{live_server.url}/p/{exp.slug}/?" + urlencode(
        {"assignmentId": "AS-X", "hitId": "HIT-1", "workerId": "WK-X", "turkSubmitTo": origin})
    page = browser.new_page()
    frame = _open_hit(page, origin, hit)
    page.wait_for_timeout(500)
    assert frame.query_selector("#consent-form") is None  # Chromium refused to display it
    top = browser.new_page()  # the same link at top level is fine
    top.goto(hit)
    assert top.query_selector("#consent-form") is not None
