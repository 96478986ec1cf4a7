"""Viewing conditions and the researcher's preview in Chromium: a participant whose window is too small is
refused at entry (nothing stored); during the trials the page pauses while the window is too small or
fullscreen was left, and records per judgment what happened (focus lost, fullscreen left, window too small),
which QC flags; a researcher previews a German draft study from consent to the done page, and nothing is
stored."""

from __future__ import annotations

import re
import time

import pytest
from django.conf import settings as django_settings
from django.test import Client

from tests.web.chromium import needs_chromium

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    needs_chromium,
]


def _rows() -> tuple[int, ...]:
    from webapp.crowd.models import Assignment, AssignmentItem, Judgment, Participant

    return (Participant.objects.count(), Assignment.objects.count(), AssignmentItem.objects.count(),
            Judgment.objects.count())


def _consent(page, url: str) -> None:
    page.goto(url)
    page.check("#consent")
    page.click("#start")


def _stored(exp, n: int) -> None:
    from webapp.crowd.models import Judgment

    deadline = time.monotonic() + 20
    while Judgment.objects.filter(trial__experiment=exp).count() < n:
        assert time.monotonic() < deadline, "judgments not stored"
        time.sleep(0.1)


def _answer(page, key: str = "ArrowLeft") -> None:
    """Answer the trial on screen once it is ready; wait for the practice feedback."""
    page.wait_for_selector("#trial[data-ready='1']", timeout=20000)
    practice = page.text_content("#phase") != ""
    page.keyboard.press(key)
    if practice:
        page.wait_for_function("document.getElementById('feedback').textContent.length > 0")


def test_a_too_small_window_is_refused_and_nothing_is_stored(
        live_server, transactional_db, experiment_factory, browser):
    exp = experiment_factory(slug="browser-small-refused",
                             viewing={"min_viewport": [1000, 700], "pixel_ratios": [1, 2], "mobile": False})
    ctx = browser.new_context(viewport={"width": 800, "height": 600}, device_scale_factor=1)
    page = ctx.new_page()
    _consent(page, f"{live_server.url}/p/{exp.slug}/")
    page.wait_for_selector("#refused")
    reasons = page.text_content("#reasons")
    assert "Your browser window is 800 × 600 pixels; this study needs at least 1000 × 700" in reasons
    assert _rows() == (0, 0, 0, 0)
    page.set_viewport_size({"width": 1200, "height": 800})  # enlarged: the same link again lets them in
    page.click("#again")
    page.check("#consent")
    page.click("#start")
    page.wait_for_selector("#begin:not([disabled])")
    assert _rows()[:2] == (1, 1)
    ctx.close()


def test_events_during_trials_are_recorded_and_flagged(
        live_server, transactional_db, experiment_factory, browser):
    """Focus lost on every trial (the window's blur, as when the participant switches to another window),
    once a window shrunk below the minimum: the trial pauses and takes no answer until it is big enough."""
    from webapp.crowd.models import Assignment, Judgment
    from webapp.lab.qc import compute_qc

    exp = experiment_factory(slug="browser-events", viewing={"min_viewport": [600, 400], "mobile": False})
    ctx = browser.new_context(viewport={"width": 900, "height": 700})
    page = ctx.new_page()
    _consent(page, f"{live_server.url}/p/{exp.slug}/")
    page.wait_for_selector("#begin:not([disabled])")
    page.click("#begin")
    a = Assignment.objects.get(experiment=exp)
    n = a.items.count()
    for k in range(n):
        page.wait_for_selector("#trial[data-ready='1']", timeout=20000)
        if k >= 1:  # not during the practice trial
            page.evaluate("window.dispatchEvent(new Event('blur')); window.dispatchEvent(new Event('focus'))")
        if k == 2:
            page.set_viewport_size({"width": 500, "height": 350})
            page.wait_for_selector("#paused:not([hidden])")
            assert "smaller than this study needs (600 × 400 pixels)" in page.text_content("#paused-text")
            page.keyboard.press("ArrowRight")  # paused: no answer is taken
            page.wait_for_timeout(300)
            assert page.get_attribute("#trial", "data-position") == str(k)
            page.set_viewport_size({"width": 900, "height": 700})
            page.wait_for_selector("#paused", state="hidden")
        _answer(page)
    page.wait_for_url("**/done", timeout=20000)
    events = dict(Judgment.objects.filter(assignment=a).values_list("item__position", "events"))
    assert events[0] == {"focus_lost": 0, "fullscreen_exits": 0, "too_small": 0, "ratio_changed": 0}
    assert all(events[k]["focus_lost"] == 1 for k in range(1, n))
    assert [k for k in range(n) if events[k]["too_small"]] == [2] and events[2]["too_small"] == 1
    qc = compute_qc(exp)[a.participant_id]
    assert qc.flagged and "lost focus on 100% of trials (max 25%)" in qc.reasons
    ctx.close()


def test_fullscreen_trials_pause_when_fullscreen_is_left(
        live_server, transactional_db, experiment_factory, browser):
    from webapp.crowd.models import Assignment, Judgment

    exp = experiment_factory(slug="browser-fullscreen", viewing={"fullscreen": True, "mobile": False},
                             practice_trials=0)
    ctx = browser.new_context(viewport={"width": 900, "height": 700})
    page = ctx.new_page()
    _consent(page, f"{live_server.url}/p/{exp.slug}/")
    page.wait_for_selector("#begin:not([disabled])")
    page.click("#begin")  # the click asks for fullscreen
    page.wait_for_function("document.fullscreenElement !== null")
    _answer(page)
    page.wait_for_selector("#trial[data-ready='1']", timeout=20000)
    page.evaluate("document.exitFullscreen()")
    page.wait_for_selector("#paused:not([hidden])")
    assert page.is_visible("#fullscreen-again")
    page.keyboard.press("ArrowLeft")
    page.wait_for_timeout(300)
    assert page.get_attribute("#trial", "data-position") == "1"  # no answer while out of fullscreen
    page.click("#fullscreen-again")
    page.wait_for_selector("#paused", state="hidden")
    _answer(page)
    a = Assignment.objects.get(experiment=exp)
    _stored(exp, 2)
    events = dict(Judgment.objects.filter(assignment=a).values_list("item__position", "events"))
    assert events[0]["fullscreen_exits"] == 0 and events[1]["fullscreen_exits"] == 1
    ctx.close()


def test_preview_of_a_german_draft_stores_nothing(live_server, transactional_db, experiment_factory, browser,
                                                   django_user_model):
    from tests.web.crowd.test_languages import english_msgids

    exp = experiment_factory(slug="browser-preview", status="draft", language="de",
                             viewing={"min_viewport": [600, 400], "mobile": False}, practice_trials=1,
                             question="Welches Bild ist der Referenz ähnlicher?",
                             consent_text="Einwilligung.", instructions_text="Vergleichen Sie.")
    researcher = Client()
    researcher.force_login(django_user_model.objects.get(username="crowd-owner"))
    ctx = browser.new_context(viewport={"width": 900, "height": 700})
    ctx.add_cookies([{"name": django_settings.SESSION_COOKIE_NAME, "url": live_server.url,
                      "value": researcher.cookies[django_settings.SESSION_COOKIE_NAME].value}])
    page = ctx.new_page()
    sent = []
    page.on("request", lambda r: sent.append((r.method, r.url)))
    before = _rows()
    english = [m for m in english_msgids() if len(m) > 6]
    seen_text = []
    _consent(page, f"{live_server.url}/lab/e/{exp.slug}/preview/")
    page.wait_for_selector("#begin:not([disabled])")
    assert page.text_content("#preview-banner") == "Vorschau — es wird nichts gespeichert"
    assert page.text_content("#begin") == "Beginnen"  # task.js through the German catalog
    seen_text.append(page.inner_text("body"))
    page.click("#begin")
    answered = 0
    while True:
        page.wait_for_selector("#trial[data-ready='1'], #done", timeout=20000)
        if page.query_selector("#done"):
            break
        if page.text_content("#phase") == "Übung:":
            page.keyboard.press("ArrowLeft")
            page.wait_for_function("document.getElementById('feedback').textContent.length > 0")
            seen_text.append(page.inner_text("body"))
        else:
            page.keyboard.press("ArrowRight")
        answered += 1
    page.wait_for_url("**/preview/done/")
    seen_text.append(page.inner_text("body"))
    assert "Vielen Dank!" in seen_text[-1] and page.is_visible("#preview-banner")
    assert answered >= 1 + exp.trials_per_assignment
    assert _rows() == before
    posts = [u for m, u in sent if m == "POST"]
    assert posts == [f"{live_server.url}/lab/e/{exp.slug}/preview/"], posts  # only the consent form
    assert not any(re.search(r"/a/[0-9a-f-]{36}/", u) for _, u in sent)
    shown = "\n".join(seen_text)
    assert not [m for m in english if re.search(rf"(?<!\w){re.escape(m)}(?!\w)", shown)]
    ctx.close()
