"""Participants' rights in Chromium: declining on the consent page stores nothing; withdrawing mid-assignment
(withdraw, then confirm) erases the participant and shows the platform's return instructions, at top level
(Prolific) and inside MTurk's cross-site frame with third-party cookies blocked."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest

from tests.web.chromium import needs_chromium
from tests.web.crowd.conftest import consent_in_frame, judge_in_frame, no_cookies_in_frame, open_hit

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    needs_chromium,
]


def _stored(exp, n: int) -> None:
    """Wait until ``n`` judgments of ``exp`` are stored (the page sends them in the background)."""
    from webapp.crowd.models import Judgment

    deadline = time.monotonic() + 15
    while Judgment.objects.filter(trial__experiment=exp).count() < n:
        assert time.monotonic() < deadline, "judgments not stored"
        time.sleep(0.1)


def _judge(page, clicks: int) -> None:
    for k in range(clicks):
        page.wait_for_selector("#trial[data-ready='1']", timeout=20000)
        practice = page.text_content("#phase") == "Practice:"
        page.click("#left" if k % 2 == 0 else "#right")
        if practice:
            page.wait_for_function("document.getElementById('feedback').textContent.length > 0")


def _withdraw(page_or_frame) -> None:
    """Withdraw, look at the confirm step, go back once, then withdraw and confirm."""
    page_or_frame.click("#withdraw")
    page_or_frame.wait_for_selector("#withdraw-confirm:not([hidden])")
    assert page_or_frame.is_hidden("#trial")
    page_or_frame.click("#withdraw-no")  # changing one's mind returns to the trial
    page_or_frame.wait_for_selector("#trial:not([hidden])")
    page_or_frame.click("#withdraw")
    page_or_frame.click("#withdraw-yes")


def _erased(exp, platform_id: str) -> None:
    from webapp.crowd.models import Assignment, Erasure, Judgment, Participant

    assert not Participant.objects.filter(experiment=exp).exists()
    assert not Participant.objects.filter(platform_id=platform_id).exists()
    assert not Assignment.objects.filter(experiment=exp).exists()
    assert not Judgment.objects.filter(trial__experiment=exp).exists()
    record = Erasure.objects.get(experiment=exp)
    assert (record.kind, record.judgments, record.assignments) == ("withdrawal", 2, 1)


def test_decline_stores_nothing(live_server, transactional_db, experiment_factory, browser):
    from webapp.crowd.models import Assignment, Participant

    exp = experiment_factory(slug="browser-decline")
    page = browser.new_page()
    page.goto(f"{live_server.url}/p/{exp.slug}/")
    page.click("#decline")  # the box need not be ticked to decline
    page.wait_for_selector("#declined")
    assert "Nothing about you has been stored" in page.text_content("#declined")
    assert not Participant.objects.exists() and not Assignment.objects.exists()


def test_withdrawal_mid_assignment(live_server, transactional_db, experiment_factory, browser):
    exp = experiment_factory(slug="browser-withdraw", platform="prolific",
                             completion_url=f"{live_server.url}/prolific-complete")
    page = browser.new_page()
    page.goto(f"{live_server.url}/p/{exp.slug}/?PROLIFIC_PID=P-WD&STUDY_ID=S1&SESSION_ID=X1")
    page.check("#consent")
    page.click("#start")
    page.wait_for_selector("#begin:not([disabled])")
    page.click("#begin")
    _judge(page, 2)
    _stored(exp, 2)
    _withdraw(page)
    page.wait_for_selector("#withdrawn")
    assert "Your 2 answers" in page.text_content("#withdrawn")
    assert "return your submission on Prolific" in page.text_content("#return-instructions")
    assert page.evaluate("() => Object.keys(localStorage).filter(k => k.startsWith('afc-'))") == []
    _erased(exp, "P-WD")


def test_withdrawal_inside_the_mturk_frame(
        live_server, transactional_db, experiment_factory, framed_browser, outer, mturk_site):
    """In MTurk's cross-site frame, with no cookie at all: consent, two trials, withdraw and confirm."""
    _, origin = outer
    exp = experiment_factory(slug="framed-withdraw", platform="mturk")
    hit = f"{live_server.url}/p/{exp.slug}/?" + urlencode(
        {"assignmentId": "AS-WD", "hitId": "HIT-1", "workerId": "WK-WD", "turkSubmitTo": origin})
    page = framed_browser.new_page()
    frame = open_hit(page, origin, hit)
    frame.wait_for_selector("#consent-form")
    consent_in_frame(frame)
    judge_in_frame(frame, page, stop_after=2)
    _stored(exp, 2)
    _withdraw(frame)
    frame.wait_for_selector("#withdrawn")
    assert "return the HIT on MTurk" in frame.text_content("#return-instructions")
    no_cookies_in_frame(frame, page, live_server.url)
    _erased(exp, "WK-WD")
