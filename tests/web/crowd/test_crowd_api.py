"""Participant entry, assignment composition and the judgment API: every rule and every bad input."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from PIL import Image

from tests.web.conftest import enter


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()


def judge(client, a, position, choice="left", uid=None, ms=800, token=None, **extra):
    body = {
        "uuid": str(uid or uuid.uuid4()),
        "position": position,
        "choice": choice,
        "response_ms": ms,
        "client_time": "2026-01-01T12:00:00Z",
        **extra,
    }
    return client.post(
        f"/a/{a.token}/judge",
        json.dumps(body),
        content_type="application/json",
        headers={"X-Assignment-Token": str(token or a.token)},
    )


def judge_all(client, a):
    for item in a.items.order_by("position"):
        assert judge(client, a, item.position).status_code == 201


# --- entry --------------------------------------------------------------------------------------------


def test_unknown_experiment_is_404(client, live_experiment):
    assert client.get("/p/no-such-study/").status_code == 404


@pytest.mark.parametrize("status", ["draft", "paused", "closed"])
def test_only_live_experiments_accept_participants(client, experiment_factory, status):
    exp = experiment_factory(status=status)
    r = client.get(f"/p/{exp.slug}/")
    assert r.status_code == 403 and b"not available" in r.content
    assert client.post(f"/p/{exp.slug}/", {"consent": "yes"}).status_code == 403
    assert not exp.assignments.exists()


def test_consent_required_and_csrf_enforced(live_experiment):
    from django.test import Client

    c = Client(enforce_csrf_checks=True)
    r = c.get(f"/p/{live_experiment.slug}/")
    assert r.status_code == 200 and b"csrfmiddlewaretoken" in r.content
    assert c.post(f"/p/{live_experiment.slug}/", {"consent": "yes"}).status_code == 403  # no CSRF token
    token = c.cookies["csrftoken"].value
    assert (
        c.post(f"/p/{live_experiment.slug}/", {"csrfmiddlewaretoken": token}).status_code == 400
    )  # no consent
    r = c.post(f"/p/{live_experiment.slug}/", {"consent": "yes", "csrfmiddlewaretoken": token})
    assert r.status_code == 302 and r["Location"].startswith("/a/")


def test_open_link_worker_resumes_same_assignment(client, live_experiment):
    a = enter(client, live_experiment)
    r = client.get(f"/p/{live_experiment.slug}/")
    assert r.status_code == 302 and r["Location"] == f"/a/{a.token}/"
    assert live_experiment.assignments.count() == 1
    assert a.participant.consent_at is not None


def test_entry_rate_limit_returns_429(client, live_experiment, settings):
    settings.CROWD_RATE_LIMIT = 5
    codes = [client.get(f"/p/{live_experiment.slug}/").status_code for _ in range(7)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]


def test_prolific_entry_and_completion_redirect(client, experiment_factory):
    exp = experiment_factory(
        platform="prolific", completion_url="https://app.prolific.com/submissions/complete"
    )
    assert client.get(f"/p/{exp.slug}/").status_code == 400  # no PROLIFIC_PID
    params = {"PROLIFIC_PID": "pid1", "STUDY_ID": "st1", "SESSION_ID": "se1"}
    a = enter(client, exp, **params)
    assert (a.participant.platform, a.participant.platform_id, a.participant.study_id) == (
        "prolific",
        "pid1",
        "st1",
    )
    r = client.get(f"/p/{exp.slug}/?PROLIFIC_PID=pid1&STUDY_ID=st1&SESSION_ID=se1")
    assert r["Location"] == f"/a/{a.token}/"  # same worker resumes
    judge_all(client, a)
    r = client.post(f"/a/{a.token}/complete", headers={"X-Assignment-Token": str(a.token)})
    assert r.status_code == 200
    assert r.json()["redirect"] == "https://app.prolific.com/submissions/complete?cc=CODE-123"
    page = client.get(f"/a/{a.token}/done")
    assert b"CODE-123" in page.content and b"submissions/complete?cc=CODE-123" in page.content


def test_mturk_preview_creates_nothing_and_submit_form(client, experiment_factory):
    exp = experiment_factory(platform="mturk")
    r = client.get(f"/p/{exp.slug}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=h1")
    assert r.status_code == 200 and b'id="preview"' in r.content
    assert not exp.assignments.exists() and not exp.participants.exists()
    assert client.get(f"/p/{exp.slug}/?workerId=w1").status_code == 400  # assignmentId missing
    evil = client.get(f"/p/{exp.slug}/?workerId=w1&assignmentId=a1&turkSubmitTo=https://evil.example")
    assert evil.status_code == 400  # turkSubmitTo must be an MTurk host (CROWD_MTURK_SUBMIT_HOSTS)
    a = enter(
        client,
        exp,
        assignmentId="A1",
        workerId="W1",
        hitId="H1",
        turkSubmitTo="https://workersandbox.mturk.com",
    )
    assert (a.mturk_assignment_id, a.hit_id, a.participant.platform_id) == ("A1", "H1", "W1")
    judge_all(client, a)
    assert (
        client.post(f"/a/{a.token}/complete", headers={"X-Assignment-Token": str(a.token)}).status_code == 200
    )
    page = client.get(f"/a/{a.token}/done").content.decode()
    assert 'action="https://workersandbox.mturk.com/mturk/externalSubmit"' in page
    assert 'name="assignmentId" value="A1"' in page


# --- assignment composition ---------------------------------------------------------------------------


def test_assignment_composition(client, live_experiment):
    a = enter(client, live_experiment)
    items = list(a.items.select_related("trial").order_by("position"))
    assert [i.position for i in items] == list(range(len(items)))
    assert items[0].is_practice and items[0].trial.kind == "practice"
    assert not any(i.is_practice for i in items[1:])
    normal = [i for i in items if i.trial.kind == "normal" and not i.is_repeat]
    assert len(normal) == 4 and len({i.trial_id for i in normal}) == 4
    assert sum(i.trial.kind == "sentinel" for i in items) == 1  # 0.25 * 4
    repeats = [i for i in items if i.is_repeat]
    assert len(repeats) == 1
    first = next(i for i in normal if i.trial_id == repeats[0].trial_id)
    assert first.position < repeats[0].position and first.left_is_a != repeats[0].left_is_a


def test_balancing_prefers_least_loaded_trials(live_experiment):
    from django.test import Client

    a1 = enter(Client(), live_experiment)
    a2 = enter(Client(), live_experiment)
    t1 = {i.trial_id for i in a1.items.filter(trial__kind="normal")}
    t2 = {i.trial_id for i in a2.items.filter(trial__kind="normal")}
    assert len(t1 | t2) == 6  # 6 normal trials, 4 each: the second takes the 2 untouched ones first


def test_expired_assignment_returns_trials_to_pool(client, live_experiment):
    from django.test import Client

    from webapp.crowd.models import Assignment

    a1 = enter(Client(), live_experiment)
    Assignment.objects.filter(pk=a1.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    enter(Client(), live_experiment)
    a1.refresh_from_db()
    assert a1.state == "expired"
    assert judge(client, a1, 0).status_code == 403


# --- state and images ---------------------------------------------------------------------------------


def test_state_reveals_nothing_about_codecs(client, live_experiment):
    a = enter(client, live_experiment)
    r = client.get(f"/a/{a.token}/state")
    text = r.content.decode().lower()
    for word in ("jpeg", "webp", "quality", "original", "stimul", "sentinel", "bpp", "media/", "refs/"):
        assert word not in text, word
    data = r.json()
    assert data["next"] == 0 and data["total"] == a.items.count()
    practice = [i for i in data["items"] if i["practice"]]
    assert all(i["correct"] in ("left", "right") for i in practice)
    assert all("correct" not in i for i in data["items"] if not i["practice"])


def _pixels(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as im:
        return im.convert("RGB").tobytes()


def test_images_match_recorded_sides(client, live_experiment):
    a = enter(client, live_experiment)
    item = a.items.select_related("trial__stimulus_a", "trial__stimulus_b", "trial__reference").get(
        position=1
    )
    # served uncompressed (tests/web/security/test_stimulus_bytes.py): the same pixels as the stored files
    for side, stored in (("left", item.left_stimulus().decoded), ("right", item.right_stimulus().decoded),
                         ("ref", item.trial.reference.file)):
        served = b"".join(client.get(f"/a/{a.token}/img/1/{side}").streaming_content)
        with stored.open("rb") as f:
            assert _pixels(served) == _pixels(f.read()), side
    assert client.get(f"/a/{a.token}/img/1/top").status_code == 404
    assert client.get(f"/a/{a.token}/img/999/left").status_code == 404
    assert client.get(f"/a/{uuid.uuid4()}/img/1/left").status_code == 404


def test_pair_mode_has_no_reference_image(client, experiment_factory):
    exp = experiment_factory(mode="pair", question="Which looks better?")
    a = enter(client, exp)
    assert all(i["ref"] is None for i in client.get(f"/a/{a.token}/state").json()["items"])
    assert client.get(f"/a/{a.token}/img/0/ref").status_code == 404


# --- judgments ----------------------------------------------------------------------------------------


def test_judgment_created_and_replayed(client, live_experiment):
    from webapp.crowd.models import Judgment

    a = enter(client, live_experiment)
    uid = uuid.uuid4()
    r = judge(client, a, 1, "right", uid, ms=50)  # faster than min_response_ms: still recorded
    assert r.status_code == 201
    j = Judgment.objects.get(client_uuid=uid)
    item = a.items.get(position=1)
    assert j.chosen == item.right_stimulus() and j.left_stimulus == item.left_stimulus()
    assert j.response_ms == 50 and j.trial_id == item.trial_id and j.client_created.year == 2026
    r2 = judge(client, a, 1, "right", uid, ms=50)
    assert r2.status_code == 200 and r2.json()["judgment"]["choice"] == "right"
    assert judge(client, a, 1, "left", uid).status_code == 409  # same uuid, different content
    assert judge(client, a, 2, "right", uid).status_code == 409
    r3 = judge(client, a, 1, "left")  # new uuid, same slot: the stored answer wins
    assert r3.status_code == 200 and r3.json()["judgment"]["choice"] == "right"
    assert Judgment.objects.filter(assignment=a).count() == 1
    assert client.get(f"/a/{a.token}/state").json()["next"] == 0


@pytest.mark.parametrize(
    "body,needle",
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"position": 0, "choice": "left", "response_ms": 5}), "missing field: uuid"),
        (json.dumps({"uuid": "nope", "position": 0, "choice": "left", "response_ms": 5}), "uuid"),
        (
            json.dumps({"uuid": str(uuid.UUID(int=1)), "choice": "left", "response_ms": 5}),
            "missing field: position",
        ),
        (
            json.dumps({"uuid": str(uuid.UUID(int=1)), "position": True, "choice": "left", "response_ms": 5}),
            "position",
        ),
        (
            json.dumps({"uuid": str(uuid.UUID(int=1)), "position": "0", "choice": "left", "response_ms": 5}),
            "position",
        ),
        (
            json.dumps({"uuid": str(uuid.UUID(int=1)), "position": 0, "choice": "up", "response_ms": 5}),
            "choice",
        ),
        (json.dumps({"uuid": str(uuid.UUID(int=1)), "position": 0, "choice": "left"}), "response_ms"),
        (
            json.dumps({"uuid": str(uuid.UUID(int=1)), "position": 0, "choice": "left", "response_ms": -1}),
            "response_ms",
        ),
        (
            json.dumps(
                {
                    "uuid": str(uuid.UUID(int=1)),
                    "position": 0,
                    "choice": "left",
                    "response_ms": 1,
                    "client_time": "yesterday",
                }
            ),
            "client_time",
        ),
        (
            json.dumps({"uuid": str(uuid.UUID(int=1)), "position": 99, "choice": "left", "response_ms": 1}),
            "no item at position 99",
        ),
    ],
)
def test_bad_judgment_bodies_are_400(client, live_experiment, body, needle):
    from webapp.crowd.models import Judgment

    a = enter(client, live_experiment)
    r = client.post(
        f"/a/{a.token}/judge",
        body,
        content_type="application/json",
        headers={"X-Assignment-Token": str(a.token)},
    )
    assert r.status_code == 400 and needle in r.json()["error"]
    assert not Judgment.objects.exists()


def test_oversized_body_is_413(client, live_experiment):
    a = enter(client, live_experiment)
    big = json.dumps(
        {"uuid": str(uuid.uuid4()), "position": 0, "choice": "left", "response_ms": 1, "pad": "x" * 100_000}
    )
    r = client.post(
        f"/a/{a.token}/judge",
        big,
        content_type="application/json",
        headers={"X-Assignment-Token": str(a.token)},
    )
    assert r.status_code == 413


def test_token_scoping(client, live_experiment):
    from django.test import Client

    from webapp.crowd.models import Judgment

    mine = enter(client, live_experiment)
    other = enter(Client(), live_experiment)
    assert judge(client, mine, 0, token=other.token).status_code == 403  # header must match the URL token
    fake = type("A", (), {"token": uuid.uuid4()})
    assert judge(client, fake, 0).status_code == 404
    assert client.get(f"/a/{uuid.uuid4()}/state").status_code == 404
    assert client.get("/a/not-a-uuid/state").status_code == 404
    r = client.post(f"/a/{mine.token}/judge", "{}", content_type="application/json")  # no header
    assert r.status_code == 403
    assert not Judgment.objects.exists()


def test_closed_experiment_and_completed_assignment_refuse_judgments(client, live_experiment):
    a = enter(client, live_experiment)
    live_experiment.status = "closed"
    live_experiment.save()
    assert judge(client, a, 0).status_code == 403
    live_experiment.status = "live"
    live_experiment.save()
    hdr = {"X-Assignment-Token": str(a.token)}
    r = client.post(f"/a/{a.token}/complete", headers=hdr)
    assert r.status_code == 409 and "not judged" in r.json()["error"]
    judge_all(client, a)
    r = client.post(f"/a/{a.token}/complete", headers=hdr)
    assert r.status_code == 200 and r.json()["code"] == "CODE-123"
    a.refresh_from_db()
    assert a.state == "completed" and a.completed_at is not None
    assert judge(client, a, 0).status_code == 403
    assert client.post(f"/a/{a.token}/complete", headers=hdr).json()["code"] == "CODE-123"  # idempotent
    assert client.get(f"/p/{live_experiment.slug}/")["Location"] == f"/a/{a.token}/done"


def test_device_facts_recorded(client, live_experiment):
    a = enter(client, live_experiment)
    r = client.post(
        f"/a/{a.token}/device",
        json.dumps({"viewport": [800, 600], "dpr": 2}),
        content_type="application/json",
        headers={"X-Assignment-Token": str(a.token)},
        HTTP_USER_AGENT="TestUA/1.0",
    )
    assert r.status_code == 200
    a.refresh_from_db()
    assert a.device == {"viewport": [800, 600], "dpr": 2, "user_agent": "TestUA/1.0", "screen": None}
    for bad in ({"dpr": "2"}, {"dpr": True}, {"dpr": -1}, {}):
        r = client.post(
            f"/a/{a.token}/device",
            json.dumps(bad),
            content_type="application/json",
            headers={"X-Assignment-Token": str(a.token)},
        )
        assert r.status_code == 400 and "dpr" in r.json()["error"]


def test_judge_queries_do_not_grow_with_database(client, live_experiment, django_assert_max_num_queries):
    a = enter(client, live_experiment)
    with django_assert_max_num_queries(8):
        assert judge(client, a, 1).status_code == 201


def test_rate_limit_keys_on_forwarded_ip_behind_trusted_proxy(client, live_experiment, settings):
    settings.CROWD_RATE_LIMIT, settings.CROWD_TRUSTED_PROXY_HOPS = 2, 1
    url = f"/p/{live_experiment.slug}/"
    codes = [client.get(url, HTTP_X_FORWARDED_FOR="1.2.3.4").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert client.get(url, HTTP_X_FORWARDED_FOR="5.6.7.8").status_code == 200  # another client behind it


def test_admin_shows_judgments_read_only(client, live_experiment, django_user_model):
    a = enter(client, live_experiment)
    assert judge(client, a, 0).status_code == 201
    django_user_model.objects.create_superuser("adm", "a@example.org", "pw")
    client.login(username="adm", password="pw")
    assert client.get("/admin/crowd/judgment/").status_code == 200
    j = a.judgments.get()
    assert client.post(f"/admin/crowd/judgment/{j.pk}/delete/", {"post": "yes"}).status_code == 403
    assert a.judgments.count() == 1


def test_an_image_costs_one_query(client, live_experiment, django_assert_num_queries):
    """The launch's hottest request: the item, its study and trial in one query (no encoded bitstreams)."""
    a = enter(client, live_experiment)
    client.get(f"/a/{a.token}/img/1/left")  # the served copy exists from make_stimuli; warm the session
    for side in ("left", "right", "ref"):
        with django_assert_num_queries(1):
            r = client.get(f"/a/{a.token}/img/1/{side}")
        assert r.status_code == 200
        b"".join(r.streaming_content)
    with django_assert_num_queries(1):
        assert client.get(f"/a/{a.token}/img/999/left").status_code == 404
