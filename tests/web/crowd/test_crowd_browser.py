"""Headless Chromium (Debian's /usr/bin/chromium) runs the whole worker flow against live_server."""

from __future__ import annotations

import pytest

from tests.web.chromium import needs_chromium

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    needs_chromium,
]


def _answer(page, keys, reload_at=None, click=False):
    """Answer every trial (keys, or clicks on the images); reload once after ``reload_at`` answers, without
    waiting for the last answer to be acknowledged. Returns the practice feedback seen."""
    feedback, done = [], 0
    while True:
        page.wait_for_selector("#trial[data-ready='1'], #finishing:not([hidden])", timeout=20000)
        if page.is_visible("#finishing"):
            return feedback
        practice = page.text_content("#phase") == "Practice:"
        assert page.get_attribute("#trial", "data-position") == str(done)  # resumes at the next unanswered
        key = keys[done % len(keys)]
        if click:
            page.click("#left" if key == "ArrowLeft" else "#right")
        else:
            page.keyboard.press(key)
        done += 1
        if practice:
            page.wait_for_function("document.getElementById('feedback').textContent.length > 0")
            feedback.append(page.text_content("#feedback"))
        if reload_at is not None and done == reload_at:
            page.reload()


def _start(page, url):
    page.goto(url)
    page.check("#consent")
    page.click("#start")
    page.wait_for_selector("#begin:not([disabled])")
    page.click("#begin")


def _assert_complete(a, dpr_seen=None):
    a.refresh_from_db()
    assert a.state == "completed"
    assert a.judgments.count() == a.items.count()
    if dpr_seen:
        assert (
            a.device["dpr"] == dpr_seen and a.device["viewport"][0] > 0 and "Chrome" in a.device["user_agent"]
        )


def test_open_link_keyboard_reload_and_one_to_one_pixels(
    live_server, transactional_db, experiment_factory, browser
):
    from webapp.crowd.models import Assignment

    exp = experiment_factory(slug="browser-open")
    ctx = browser.new_context(device_scale_factor=2, viewport={"width": 900, "height": 700})
    page = ctx.new_page()
    _start(page, f"{live_server.url}/p/{exp.slug}/")
    page.wait_for_selector("#trial[data-ready='1']")
    # 1:1 device pixels: CSS size × devicePixelRatio == the PNG's natural size (64 px).
    dims = page.evaluate("""() => ['#left img', '#right img', '#ref'].map(s => {
        const el = document.querySelector(s); return [el.getBoundingClientRect().width * devicePixelRatio,
        el.naturalWidth]; })""")
    assert all(abs(css - nat) < 0.01 and nat == 64 for css, nat in dims), dims
    assert page.is_hidden("#size-warning")
    feedback = _answer(page, ["ArrowLeft", "ArrowRight", "ArrowLeft"], reload_at=3)
    assert feedback and all(f.startswith(("Correct", "Not quite")) for f in feedback)
    page.wait_for_url("**/done")
    assert page.text_content("#code") == "CODE-123"
    _assert_complete(Assignment.objects.get(experiment=exp), dpr_seen=2)
    page.goto(f"{live_server.url}/p/{exp.slug}/")  # returning worker lands on the completion page
    assert page.url.endswith("/done")
    ctx.close()


def test_small_window_warns(live_server, transactional_db, experiment_factory, browser):
    exp = experiment_factory(slug="browser-small")
    ctx = browser.new_context(device_scale_factor=1, viewport={"width": 150, "height": 300})
    page = ctx.new_page()
    _start(page, f"{live_server.url}/p/{exp.slug}/")
    page.wait_for_selector("#trial[data-ready='1']")
    assert page.is_visible("#size-warning")
    ctx.close()


def test_prolific_flow_redirect(live_server, transactional_db, experiment_factory, browser):
    from webapp.crowd.models import Assignment

    exp = experiment_factory(
        slug="browser-prolific", platform="prolific", completion_url=f"{live_server.url}/prolific-complete"
    )
    page = browser.new_page()
    _start(page, f"{live_server.url}/p/{exp.slug}/?PROLIFIC_PID=p123&STUDY_ID=s1&SESSION_ID=x9")
    _answer(page, ["ArrowRight", "ArrowLeft"], click=True)  # touch/click instead of keys
    page.wait_for_url("**/prolific-complete?cc=CODE-123", timeout=15000)  # automatic redirect to Prolific
    a = Assignment.objects.get(experiment=exp)
    assert a.participant.platform_id == "p123" and a.participant.session_id == "x9"
    _assert_complete(a)


def test_lost_connection_answers_are_retried(live_server, transactional_db, experiment_factory, browser):
    """The first judgment POSTs fail at the network level; the page keeps and re-sends them."""
    from webapp.crowd.models import Assignment

    exp = experiment_factory(slug="browser-offline")
    page = browser.new_page()
    failures = {"n": 0}

    def flaky(route):
        if failures["n"] < 4:
            failures["n"] += 1
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route("**/judge", flaky)
    _start(page, f"{live_server.url}/p/{exp.slug}/")
    _answer(page, ["ArrowLeft", "ArrowRight"])
    page.wait_for_url("**/done", timeout=30000)
    assert failures["n"] == 4
    _assert_complete(Assignment.objects.get(experiment=exp))
