"""Session and cookie handling on the participant side, beyond fixation (``test_entry_integrity.py``).

A garbage or oversized session cookie is a new visitor, never a 500; the session cookie is HttpOnly and
SameSite; one study's session and signed consent form open nothing in another study.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.web.conftest import enter


@pytest.mark.parametrize("value", ["garbage", "x" * 4000, "..%2F..%2Fetc", "\u00e9\u00e9", "a" * 32])
def test_garbage_session_cookie_is_a_new_visitor(live_experiment, settings, value):
    c = Client(raise_request_exception=False)
    c.cookies[settings.SESSION_COOKIE_NAME] = value
    assert c.get(f"/p/{live_experiment.slug}/").status_code == 200
    a = enter(c, live_experiment)
    assert c.cookies[settings.SESSION_COOKIE_NAME].value not in ("", value)
    assert c.get(f"/a/{a.token}/state").status_code == 200


def test_session_cookie_is_httponly_and_samesite(client, live_experiment, settings):
    r = client.post(f"/p/{live_experiment.slug}/", {"consent": "yes"})
    morsel = r.cookies[settings.SESSION_COOKIE_NAME]
    assert morsel["httponly"] and morsel["samesite"].lower() in ("lax", "strict")


def test_one_studys_session_opens_nothing_in_another(client, experiment_factory):
    first, second = experiment_factory(), experiment_factory()
    a = enter(client, first)
    b = enter(client, second)
    assert a.participant_id != b.participant_id and a.token != b.token
    assert b.experiment_id == second.pk and a.participant.platform_id != b.participant.platform_id


def test_a_consent_form_signed_for_one_study_is_refused_by_another(client, experiment_factory):
    from webapp.crowd.models import Assignment

    first, second = experiment_factory(), experiment_factory()
    page = client.get(f"/p/{first.slug}/").content.decode()
    entry = re.search(r'name="entry" value="([^"]+)"', page).group(1)
    r = Client().post(f"/p/{second.slug}/", {"consent": "yes", "entry": entry})
    assert r.status_code == 400 and not Assignment.objects.exists()
