"""Viewing conditions: the experiment file's ``viewing:`` block (validated, contradictions refused), the
server's re-check of what the consent page measured (nothing stored for a refused participant, MTurk's
cookie-less frame included), the events recorded per judgment (stored, refused when malformed), and what
they become in ``judgments.csv`` and QC."""

from __future__ import annotations

import csv
import json
import re
import uuid
from urllib.parse import urlencode

import pytest
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client

from tests.web.conftest import consent_form, enter
from webapp.experiments.spec import SpecError, validate, viewing_conditions

VIEWING = {"min_viewport": [1000, 700], "pixel_ratios": [1, 2], "mobile": False}
DESKTOP_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 "
              "Safari/537.36")
PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.4 Mobile/15E148 Safari/604.1")
OWN = {"Origin": "http://testserver"}


@pytest.fixture(autouse=True)
def _no_rate_limit(settings):
    settings.CROWD_RATE_LIMIT = 0
    cache.clear()


def facts(viewport=(1280, 800), dpr=1, mobile=False, fullscreen=True) -> str:
    """The ``viewing`` field as the consent page's entry.js fills it."""
    return json.dumps({"viewport": list(viewport), "dpr": dpr, "screen": [1920, 1080], "mobile": mobile,
                       "fullscreen": fullscreen})


def _counts() -> tuple[int, ...]:
    from webapp.crowd.models import Assignment, AssignmentItem, Judgment, Participant

    return (Participant.objects.count(), Assignment.objects.count(), AssignmentItem.objects.count(),
            Judgment.objects.count(), Session.objects.count())


# --- the experiment file --------------------------------------------------------------------------------

BASE = {"slug": "v", "title": "V", "codecs": ["jpeg:20"]}


def test_viewing_block_is_checked_and_completed_with_defaults():
    assert viewing_conditions({"min_viewport": [1024, 768], "pixel_ratios": [2, 1, 1.0]}) == {
        "min_viewport": [1024, 768], "pixel_ratios": [1.0, 2.0], "mobile": True, "fullscreen": False}
    # no tablet's window reaches 1600 px wide and 1100 high: phones and tablets are left out by default
    assert viewing_conditions({"min_viewport": [1600, 1100]})["mobile"] is False
    assert viewing_conditions({"fullscreen": True, "mobile": False})["fullscreen"] is True
    validate({**BASE, "viewing": VIEWING, "language": "de"})
    validate({**BASE, "language": "en"})


@pytest.mark.parametrize("viewing, says", [
    ({"pixel_ratios": []}, "no device could take part"),
    ({"min_viewport": [5000, 5000]}, "more than the largest displays"),
    ({"min_viewport": [8000, 1000]}, "more than the largest displays"),
    ({"min_viewport": [3000, 2500], "pixel_ratios": [2, 3]}, "needs 6000×5000 device pixels"),
    ({"min_viewport": [1600, 1100], "mobile": True}, "larger than any phone's or tablet's window"),
    ({"fullscreen": True, "mobile": True}, "iPhones cannot"),
    ({"min_viewport": [1024]}, "viewing.min_viewport"),
    ({"min_viewport": [1024, 0]}, "viewing.min_viewport"),
    ({"min_viewport": [1024.5, 700]}, "viewing.min_viewport"),
    ({"min_viewport": "1024x768"}, "viewing.min_viewport"),
    ({"pixel_ratios": [1, 0]}, "viewing.pixel_ratios"),
    ({"pixel_ratios": [True]}, "viewing.pixel_ratios"),
    ({"pixel_ratios": 2}, "viewing.pixel_ratios"),
    ({"mobile": "no"}, "viewing.mobile"),
    ({"fullscreen": 1}, "viewing.fullscreen"),
    ({"min_width": 800}, "unknown field(s) min_width"),
    ([1024, 768], "expected a mapping"),
    (None, "expected a mapping"),
])
def test_malformed_or_contradictory_viewing_is_refused(viewing, says):
    with pytest.raises(SpecError, match=re.escape(says)):
        validate({**BASE, "viewing": viewing})


@pytest.mark.parametrize("language", ["fr", "DE", "", None, 1, ["de"]])
def test_unknown_language_is_refused(language):
    with pytest.raises(SpecError, match="language: must be one of en, de"):
        validate({**BASE, "language": language})


def test_create_experiment_refuses_contradictions_and_creates_nothing(db, tmp_path):
    from webapp.experiments.models import Experiment

    path = tmp_path / "study.yaml"
    head = "slug: clash\ntitle: Clash\ncodecs: [jpeg:20]\n"
    path.write_text(head + "viewing:\n  fullscreen: true\n  mobile: true\n")
    with pytest.raises(CommandError, match="fullscreen is required"):
        call_command("create_experiment", str(path))
    path.write_text(head + "language: fr\n")
    with pytest.raises(CommandError, match="language"):
        call_command("create_experiment", str(path))
    assert not Experiment.objects.exists()


# --- entry: the server's re-check ---------------------------------------------------------------------------


def _consent(client: Client, exp, viewing: str | None, ua: str = DESKTOP_UA, **params):
    url = f"/p/{exp.slug}/" + ("?" + urlencode(params) if params else "")
    form = consent_form(client, url)
    if viewing is None:
        form.pop("viewing", None)
    else:
        form["viewing"] = viewing
    return client.post(url, {**form, "consent": "yes"}, headers={**OWN, "User-Agent": ua})


def test_consent_page_measures_and_lists_what_is_needed(client, experiment_factory):
    exp = experiment_factory(viewing={**VIEWING, "fullscreen": True})
    page = client.get(f"/p/{exp.slug}/").content.decode()
    assert 'name="viewing" value="" id="viewing-facts"' in page and "crowd/entry.js" in page
    for need in ("at least 1000 × 700 pixels", "pixel ratio of 1, 2", "phones and tablets cannot take part",
                 "shown in fullscreen"):
        assert need in page, need
    plain = experiment_factory().slug  # a study without conditions measures nothing
    page = client.get(f"/p/{plain}/").content.decode()
    assert 'name="viewing"' not in page and "entry.js" not in page and 'id="requirements"' not in page


@pytest.mark.parametrize("viewing, ua, says", [
    (facts(viewport=(800, 600)), DESKTOP_UA, "Your browser window is 800 × 600 pixels; this study needs at "
                                             "least 1000 × 700"),
    (facts(viewport=(1280, 690)), DESKTOP_UA, "needs at least 1000 × 700"),
    (facts(dpr=1.25), DESKTOP_UA, "pixel ratio is 1.25; this study needs 1, 2"),
    (facts(dpr=1.1000000238), DESKTOP_UA, "pixel ratio is 1.1;"),
    (facts(mobile=True), DESKTOP_UA, "cannot be done on a phone or tablet"),  # an iPad presenting as a Mac
    (facts(), PHONE_UA, "cannot be done on a phone or tablet"),
    (None, DESKTOP_UA, "did not report its window size"),
    ("", DESKTOP_UA, "did not report its window size"),
    ("{not json", DESKTOP_UA, "did not report its window size"),
    (json.dumps({"viewport": [1280], "dpr": 1}), DESKTOP_UA, "did not report its window size"),
    (json.dumps({"viewport": [1280, 800], "dpr": 0}), DESKTOP_UA, "did not report its window size"),
    (json.dumps({"viewport": [1280, 800], "dpr": True}), DESKTOP_UA, "did not report its window size"),
    ("x" * 5000, DESKTOP_UA, "did not report its window size"),
])
def test_a_device_that_does_not_meet_the_conditions_is_refused_and_nothing_is_stored(
        experiment_factory, viewing, ua, says):
    exp = experiment_factory(viewing=VIEWING, platform="prolific")
    client = Client()
    before = _counts()
    r = _consent(client, exp, viewing, ua=ua, PROLIFIC_PID="P-1", STUDY_ID="S", SESSION_ID="X")
    text = r.content.decode()
    assert r.status_code == 403 and 'id="refused"' in text, text[:500]
    assert says in text
    assert "return your submission on Prolific" in text  # so that the place is freed
    assert 'id="again" href="/p/' in text and "PROLIFIC_PID=P-1" in text  # the same link, to try again
    assert _counts() == before  # no participant, assignment or session
    assert not client.cookies.get("sessionid")


def test_all_reasons_are_listed_at_once(client, experiment_factory):
    exp = experiment_factory(viewing=VIEWING)
    text = _consent(client, exp, facts(viewport=(800, 600), dpr=3), ua=PHONE_UA).content.decode()
    assert len(re.findall(r"<li>", text)) == 3


def test_a_device_that_meets_them_enters(client, experiment_factory):
    from webapp.crowd.models import Assignment

    exp = experiment_factory(viewing=VIEWING)
    for dpr in (1, 2.0000000298):
        c = Client()
        r = _consent(c, exp, facts(dpr=dpr))
        assert r.status_code == 302 and "/a/" in r["Location"], r.content[:300]
    assert Assignment.objects.filter(experiment=exp).count() == 2


def test_fullscreen_needs_a_browser_that_allows_it(client, experiment_factory):
    exp = experiment_factory(viewing={"fullscreen": True, "mobile": False})
    r = _consent(client, exp, facts(fullscreen=False))
    assert r.status_code == 403 and b"does not allow on this page" in r.content
    assert _consent(Client(), exp, facts(fullscreen=True)).status_code == 302


def test_studies_without_conditions_take_anyone(client, experiment_factory):
    exp = experiment_factory()
    assert _consent(client, exp, None, ua=PHONE_UA).status_code == 302


def test_mturk_frame_without_cookies_is_checked_too(experiment_factory):
    """MTurk's cookie-less entry: the signed field carries the worker's ids, the measurements are extra
    fields; a refusal stores nothing and sets no cookie, an accepted device enters as before."""
    from webapp.crowd.models import Assignment

    exp = experiment_factory(viewing=VIEWING, platform="mturk")
    params = {"assignmentId": "AS-1", "hitId": "H-1", "workerId": "W-1",
              "turkSubmitTo": "https://workersandbox.mturk.com"}
    c = Client()
    before = _counts()
    r = _consent(c, exp, facts(viewport=(640, 480)), **params)
    assert r.status_code == 403 and b"640 \xc3\x97 480" in r.content
    assert r.headers["Content-Security-Policy"].startswith("frame-ancestors ")  # still framed by MTurk
    assert _counts() == before and not c.cookies
    r = _consent(c, exp, facts(), **params)
    assert r.status_code == 302 and not c.cookies
    a = Assignment.objects.get(experiment=exp)
    assert a.mturk_assignment_id == "AS-1" and a.participant.platform_id == "W-1"


def test_the_judging_page_gets_the_conditions(client, experiment_factory):
    exp = experiment_factory(viewing={**VIEWING, "fullscreen": True})
    r = _consent(client, exp, facts())
    page = client.get(r["Location"]).content.decode()
    state = json.loads(re.search(r'<script id="state" type="application/json">(.*?)</script>', page, re.S)[1])
    assert state["viewing"] == {"min_viewport": [1000, 700], "pixel_ratios": [1.0, 2.0], "mobile": False,
                                "fullscreen": True}
    assert 'id="paused"' in page and 'id="fullscreen-again"' in page


# --- events per judgment --------------------------------------------------------------------------------


def _judge(client, a, position, **extra):
    body = {"uuid": str(uuid.uuid4()), "position": position, "choice": "left", "response_ms": 900,
            "client_time": "2026-01-01T12:00:00Z", **extra}
    return client.post(f"/a/{a.token}/judge", json.dumps(body), content_type="application/json",
                       headers={"X-Assignment-Token": str(a.token)})


def test_events_are_stored_with_the_judgment(client, live_experiment):
    from webapp.crowd.models import Judgment

    a = enter(client, live_experiment)
    r = _judge(client, a, 0, events={"focus_lost": 2, "fullscreen_exits": 1, "too_small": 0,
                                     "ratio_changed": 3})
    assert r.status_code == 201
    r = _judge(client, a, 1, events={"focus_lost": 1})  # missing counts are 0
    assert r.status_code == 201
    assert _judge(client, a, 2).status_code == 201  # a page that reports none (an older one, a script)
    assert _judge(client, a, 3, events=None).status_code == 201
    stored = dict(Judgment.objects.filter(assignment=a).values_list("item__position", "events"))
    assert stored == {
        0: {"focus_lost": 2, "fullscreen_exits": 1, "too_small": 0, "ratio_changed": 3},
        1: {"focus_lost": 1, "fullscreen_exits": 0, "too_small": 0, "ratio_changed": 0},
        2: None, 3: None}
    assert Judgment.objects.filter(assignment=a, events__isnull=True).count() == 2  # SQL NULL, not JSON null


@pytest.mark.parametrize("events, says", [
    ([1, 2], "events: expected an object"),
    ("focus_lost", "events: expected an object"),
    (3, "events: expected an object"),
    ({"blur": 1}, "events: unknown key 'blur'"),
    ({"focus_lost": -1}, "events.focus_lost"),
    ({"focus_lost": 1.5}, "events.focus_lost"),
    ({"focus_lost": True}, "events.focus_lost"),
    ({"focus_lost": "2"}, "events.focus_lost"),
    ({"fullscreen_exits": None}, "events.fullscreen_exits"),
    ({"too_small": 100001}, "events.too_small"),
    ({"ratio_changed": {"n": 1}}, "events.ratio_changed"),
])
def test_malformed_events_are_400_and_nothing_is_stored(client, live_experiment, events, says):
    from webapp.crowd.models import Judgment

    a = enter(client, live_experiment)
    r = _judge(client, a, 0, events=events)
    assert r.status_code == 400 and says in r.json()["error"], r.content
    assert not Judgment.objects.exists()


# --- judgments.csv and QC ----------------------------------------------------------------------------------


def _enter(exp):
    """A participant whose device meets the study's conditions."""
    from webapp.crowd.models import Assignment

    r = _consent(Client(), exp, facts())
    assert r.status_code == 302, r.content[:300]
    return Assignment.objects.get(token=r["Location"].rstrip("/").split("/")[-1])


def _judge_all(client, a, events_for) -> None:
    for item in a.items.order_by("position"):
        assert _judge(client, a, item.position, events=events_for(item)).status_code == 201


def test_events_in_the_export_and_qc(experiment_factory, tmp_path):
    from webapp.lab.qc import compute_qc, qc_rules

    exp = experiment_factory(viewing={"min_viewport": [200, 200], "fullscreen": True, "mobile": False},
                             trials_per_assignment=6, repeat_rate=0, sentinel_rate=0)
    calm, restless, silent = (_enter(exp) for _ in range(3))
    _judge_all(Client(), calm, lambda it: {"focus_lost": 0})
    # loses focus on every trial but the practice, leaves fullscreen once per trial, shrinks the window once
    _judge_all(Client(), restless, lambda it: {} if it.is_practice else {
        "focus_lost": 1, "fullscreen_exits": 1, "too_small": int(it.position == 3)})
    for item in silent.items.order_by("position"):  # a client that reports nothing
        assert _judge(Client(), silent, item.position).status_code == 201

    qc = compute_qc(exp)
    q = qc[restless.participant_id]
    assert (q.with_events, q.focus_lost, q.fullscreen_exits, q.too_small) == (6, 6, 6, 1)
    assert q.focus_lost_share == 1.0
    assert "lost focus on 100% of trials (max 25%)" in q.reasons
    assert "left fullscreen 6 times (max 2)" in q.reasons
    assert not any("minimum size" in r for r in q.reasons)  # once is within max_too_small
    assert not qc[calm.participant_id].flagged and qc[calm.participant_id].focus_lost_share == 0
    assert qc[silent.participant_id].with_events == 0 and not qc[silent.participant_id].flagged

    # thresholds per study, as the other rules'
    exp.spec = {**exp.spec, "qc": {"max_too_small": 0, "max_fullscreen_exits": 10}}
    exp.save(update_fields=["spec"])
    assert qc_rules(exp)["max_too_small"] == 0
    reasons = compute_qc(exp)[restless.participant_id].reasons
    assert "window below the minimum size 1 time (max 0)" in reasons
    assert not any("fullscreen" in r for r in reasons)

    out = tmp_path / "ds"
    call_command("export_dataset", exp.slug, "--out", str(out), verbosity=0)
    with open(out / "judgments.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and {"focus_lost", "fullscreen_exits", "too_small", "ratio_changed"} <= set(rows[0])
    mine = {r["position"]: r for r in rows if r["qc_flagged"] == "True"}
    assert (mine["3"]["too_small"], mine["3"]["focus_lost"], mine["3"]["fullscreen_exits"]) == ("1", "1", "1")
    assert "lost focus on 100% of trials" in mine["3"]["qc_reasons"]
    silent_rows = [r for r in rows if r["focus_lost"] == ""]  # the page reported nothing: empty, not 0
    assert len(silent_rows) == silent.items.count()
    jsonl = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    assert sum(r["focus_lost"] is None for r in jsonl) == silent.items.count()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["qc"]["rules"]["max_focus_lost_share"] == 0.25
    assert manifest["experiment"]["spec"]["viewing"]["fullscreen"] is True
