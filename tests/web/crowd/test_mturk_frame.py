"""MTurk as MTurk shows a HIT: the study link inside a frame on another site, third-party cookies blocked.

The outer page, MTurk's side and Chromium with third-party cookies blocked are fixtures of ``conftest.py``
(shared with the withdrawal test); each test checks that the frame really gets no cookie.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.web.chromium import needs_chromium
from tests.web.crowd.conftest import consent_in_frame, judge_in_frame, no_cookies_in_frame, open_hit

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    needs_chromium,
]


def test_hit_in_frame_with_third_party_cookies_blocked(
        live_server, transactional_db, experiment_factory, framed_browser, outer, mturk_site):
    """Consent, every trial, a reload of the HIT mid-assignment, the submit back to MTurk: all inside the
    cross-site frame, with no cookie at all."""
    from webapp.crowd.models import Assignment

    server, origin = outer
    exp = experiment_factory(slug="framed-hit", platform="mturk")
    hit = f"{live_server.url}/p/{exp.slug}/?" + urlencode(
        {"assignmentId": "AS-FRAME", "hitId": "HIT-1", "workerId": "WK-FRAME", "turkSubmitTo": origin})
    ctx = framed_browser.new_context(viewport={"width": 1100, "height": 900})
    page = ctx.new_page()
    frame = open_hit(page, origin, hit)
    frame.wait_for_selector("#consent-form")
    no_cookies_in_frame(frame, page, live_server.url)
    consent_in_frame(frame)
    judged = judge_in_frame(frame, page, stop_after=3)
    # The worker reloads MTurk's page: the frame opens the HIT URL again and resumes at the next item.
    page.reload()
    frame = page.frame(name="hit")  # a returning worker goes straight back to the trials
    judged = judge_in_frame(frame, page, answered=judged)
    frame.wait_for_selector("#submit-button", timeout=20000)
    assert frame.text_content("#code") == "CODE-123"
    no_cookies_in_frame(frame, page, live_server.url)
    frame.click("#submit-button")
    frame.wait_for_selector("#turk-thanks")
    assert server.submitted == [{"assignmentId": ["AS-FRAME"], "completion_code": ["CODE-123"]}]
    a = Assignment.objects.get(experiment=exp)
    assert (a.mturk_assignment_id, a.hit_id, a.participant.platform_id) == ("AS-FRAME", "HIT-1", "WK-FRAME")
    assert a.state == "completed" and a.judgments.count() == a.items.count() == judged
    ctx.close()


def test_preview_in_frame_stores_nothing(
        live_server, transactional_db, experiment_factory, framed_browser, outer, mturk_site):
    from webapp.crowd.models import Assignment, Participant

    _, origin = outer
    exp = experiment_factory(slug="framed-preview", platform="mturk")
    hit = f"{live_server.url}/p/{exp.slug}/?" + urlencode(
        {"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "HIT-1", "turkSubmitTo": origin})
    page = framed_browser.new_page()
    frame = open_hit(page, origin, hit)
    frame.wait_for_selector("#preview")
    assert frame.query_selector("#consent-form") is None
    no_cookies_in_frame(frame, page, live_server.url)
    assert not Participant.objects.exists() and not Assignment.objects.exists()


def test_frame_refused_on_a_site_mturk_is_not(
        live_server, transactional_db, experiment_factory, framed_browser, outer, settings):
    """Framing is allowed to MTurk's sites only: framed by any other site, the page is not drawn."""
    _, origin = outer
    settings.CROWD_MTURK_SUBMIT_HOSTS = [origin]  # the link itself is valid; only the framing site is wrong
    exp = experiment_factory(slug="framed-elsewhere", platform="mturk")
    hit = f"{live_server.url}/p/{exp.slug}/?" + urlencode(
        {"assignmentId": "AS-X", "hitId": "HIT-1", "workerId": "WK-X", "turkSubmitTo": origin})
    page = framed_browser.new_page()
    frame = open_hit(page, origin, hit)
    page.wait_for_timeout(500)
    assert frame.query_selector("#consent-form") is None  # Chromium refused to display it
    top = framed_browser.new_page()  # the same link at top level is fine
    top.goto(hit)
    assert top.query_selector("#consent-form") is not None
