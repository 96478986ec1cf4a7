"""Shared fixtures of the crowd tests: MTurk as MTurk shows a HIT, for the browser tests that need it.

An outer page on another site (``http://127.0.0.2:PORT``, cross-site to the live server on ``localhost``)
frames the HIT URL with ``turkSubmitTo`` pointing at itself, as MTurk's worker site does, and records the
``POST /mturk/externalSubmit`` the completion page sends. ``framed_browser`` is Chromium with third-party
cookies blocked (``--test-third-party-cookie-phaseout``); ``no_cookies_in_frame`` checks that the frame
really gets no cookie.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode

import pytest

from tests.web.chromium import NO_THIRD_PARTY_COOKIES, chromium

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
    """(the outer server, its origin): MTurk's worker site."""
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
def framed_browser(monkeypatch):
    """Chromium with third-party cookies blocked."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    with chromium(NO_THIRD_PARTY_COOKIES) as b:
        yield b


@pytest.fixture
def mturk_site(settings, outer):
    """The outer page stands in for MTurk's worker site: it may frame the study and receive the submit."""
    _, origin = outer
    settings.CROWD_MTURK_FRAME_ANCESTORS = [origin]
    settings.CROWD_MTURK_SUBMIT_HOSTS = [origin]
    return origin


def open_hit(page, origin: str, hit_url: str):
    """The outer page framing ``hit_url``; returns the frame once its document has loaded."""
    page.goto(f"{origin}/hit?" + urlencode({"src": hit_url}))
    # the iframe element's frame: looking it up by name can come too early on a busy machine
    frame = page.wait_for_selector("#hit", state="attached").content_frame()
    frame.wait_for_load_state()
    return frame


def no_cookies_in_frame(frame, page, live_url: str) -> None:
    """Third-party cookies are blocked: the frame can set none, and the browser holds none of the site's."""
    assert frame.evaluate("() => { document.cookie = 'probe=1; path=/'; return document.cookie; }") == ""
    assert page.context.cookies(live_url) == []


def judge_in_frame(frame, page, stop_after: int | None = None, answered: int = 0) -> int:
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


def consent_in_frame(frame) -> None:
    frame.check("#consent")
    frame.click("#start")
    frame.wait_for_selector("#begin:not([disabled])")
    frame.click("#begin")
