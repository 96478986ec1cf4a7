"""Access control: participants are confined to their own assignment, learn nothing about codecs, and
cannot finish without judging; researcher pages, admin and API refuse outsiders; CSRF and rate limits."""

from __future__ import annotations

import json
import re
import struct
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from tests.web.conftest import enter
from tests.web.security.hostile import assert_clean, probe


def _judge(client, a, position, token=None, choice="left"):
    body = {"uuid": str(uuid.uuid4()), "position": position, "choice": choice, "response_ms": 900}
    return client.post(f"/a/{a.token}/judge", json.dumps(body), content_type="application/json",
                       headers={"X-Assignment-Token": str(token or a.token)})


# --- participants ---------------------------------------------------------------------------------------


def test_participant_cannot_read_or_write_another_assignment(live_experiment):
    from webapp.crowd.models import Judgment

    ca, cb = Client(raise_request_exception=False), Client(raise_request_exception=False)
    a, b = enter(ca, live_experiment), enter(cb, live_experiment)
    assert a.token != b.token and a.token.version == 4 and b.token.version == 4  # random, not guessable
    assert _judge(cb, b, 0).status_code == 201
    hb = {"X-Assignment-Token": str(b.token)}
    body = json.dumps({"uuid": str(uuid.uuid4()), "position": 1, "choice": "left", "response_ms": 900})
    # A holds its own token and B's URLs (say, from a shared screenshot) but not B's header, or vice versa
    for target, header in ((b, a.token), (a, b.token)):
        h = {"X-Assignment-Token": str(header)}
        for view in ("judge", "device", "complete"):
            data = body if view == "judge" else json.dumps({"dpr": 1})
            probe("access.cross", f"{view} on {target.token} with {header}", ca.post,
                  f"/a/{target.token}/{view}", data, content_type="application/json", headers=h, expect={403})
    # A's session (cookie) grants nothing on B: only the token in the URL and header counts
    probe("access.cross", "A's cookies, B's URL, no header", ca.post, f"/a/{b.token}/judge", body,
          content_type="application/json", expect={403})
    # nothing A receives mentions B
    pages = [ca.get(f"/a/{a.token}/"), ca.get(f"/a/{a.token}/state"), ca.get(f"/p/{live_experiment.slug}/")]
    for r in pages:
        assert str(b.token) not in r.content.decode() + r.get("Location", "")
    state_a = ca.get(f"/a/{a.token}/state").json()
    assert all(item["answered"] is None for item in state_a["items"])  # B's judgment is not A's
    assert Judgment.objects.filter(assignment=a).count() == 0
    assert cb.get(f"/a/{b.token}/state", headers=hb).json()["items"][0]["answered"] == "left"
    # a new browser on the same open link gets its own assignment, never someone else's
    tokens = {enter(Client(), live_experiment).token for _ in range(3)}
    assert len(tokens) == 3 and not tokens & {a.token, b.token}
    assert_clean("access.cross", 7)


def test_cannot_finish_without_judging(client, live_experiment):
    a = enter(client, live_experiment)
    items = list(a.items.order_by("position"))
    h = {"X-Assignment-Token": str(a.token)}
    code = live_experiment.completion_code
    seen = []

    def finish_attempts(label):
        r = probe("access.finish", f"complete {label}", client.post, f"/a/{a.token}/complete", headers=h,
                  expect={409})
        seen.append(r.body)
        done = probe("access.finish", f"done page {label}", client.get, f"/a/{a.token}/done", expect={302})
        seen.append(done.body)
        seen.append(client.get(f"/a/{a.token}/state").content)
        seen.append(client.get(f"/a/{a.token}/").content)

    finish_attempts("with nothing judged")
    for item in items:
        if item.is_practice:
            assert _judge(client, a, item.position).status_code == 201
    finish_attempts("with only the practice judged")
    for item in items[:-1]:
        _judge(client, a, item.position)
    finish_attempts("with one item left")
    # the code of the study never reaches the page before the last judgment
    assert not any(code.encode() in body for body in seen)
    a.refresh_from_db()
    assert a.state == "active" and a.completed_at is None and a.completion_code == ""
    assert _judge(client, a, items[-1].position).status_code == 201
    r = client.post(f"/a/{a.token}/complete", headers=h)
    assert r.status_code == 200 and r.json()["code"] == code
    assert_clean("access.finish", 6)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        out.append((data[i + 4:i + 8], data[i + 8:i + 8 + n]))
        i += 12 + n
    return out


def test_no_response_or_url_reveals_codec_quality_or_stimulus(client, experiment_factory):
    """Every participant-facing response, header and URL, and the image files themselves, carry no codec
    name, setting, quality, codec version, stimulus id, reference hash or storage path."""
    from learning.codecs import registered_names
    from webapp.stimuli.models import Stimulus

    # jxl: its decoder attaches an ICC profile that used to ride along in the served PNG
    exp = experiment_factory(codecs=("jpeg:10,40", "webp:30", "jxl:50"), trials_per_assignment=6)
    a = enter(client, exp)
    h = {"X-Assignment-Token": str(a.token)}
    responses = {"consent": Client().get(f"/p/{exp.slug}/"), "task": client.get(f"/a/{a.token}/"),
                 "state": client.get(f"/a/{a.token}/state")}
    state = responses["state"].json()
    for item in state["items"]:
        assert set(item) <= {"position", "id", "left", "right", "ref", "practice", "answered", "correct"}
        for side in ("left", "right", "ref"):
            assert item[side] == f"/a/{a.token}/img/{item['position']}/{side}"
            responses[f"img {item['position']} {side}"] = client.get(item[side])
    for item in state["items"]:
        responses[f"judge {item['position']}"] = _judge(client, a, item["position"])
    responses["device"] = client.post(f"/a/{a.token}/device", json.dumps({"dpr": 1}),
                                      content_type="application/json", headers=h)
    responses["complete"] = client.post(f"/a/{a.token}/complete", headers=h)
    responses["done"] = client.get(f"/a/{a.token}/done")

    stims = list(Stimulus.objects.select_related("reference"))
    words = set(registered_names()) | {"original", "quality", "bpp", "setting", "codec", "stimul"}
    secrets = {s.setting_key for s in stims} | {s.codec_version for s in stims if s.codec_version}
    secrets |= {str(s.public_id) for s in stims} | {s.public_id.hex for s in stims}
    secrets |= {s.reference.sha256 for s in stims} | {s.encoded_sha256 for s in stims if s.encoded_sha256}
    secrets |= {"media/", "refs/", "stimuli/", ".jpg", ".webp", ".jxl"}
    images = 0
    for label, r in responses.items():
        assert r.status_code in (200, 201), (label, r.status_code)
        head = " ".join(f"{k}: {v}" for k, v in r.items()).lower()
        if label.startswith("img"):
            data = b"".join(r.streaming_content)
            images += 1
            assert r["Content-Type"] == "image/png" and "ETag" not in r and "Last-Modified" not in r
            chunks = _png_chunks(data)
            assert [k for k, _ in chunks if k not in (b"IDAT",)] == [b"IHDR", b"IEND"], (label, chunks[:4])
            assert chunks[0][1][8:10] == b"\x08\x02", label  # 8-bit RGB: the same pixel format for all
            text = head
        else:
            text = head + " " + r.content.decode().lower()
        for s in secrets:
            assert s.lower() not in text, (label, s)
        for w in words:
            assert not re.search(rf"\b{re.escape(w)}", text), (label, w)
    assert images == 3 * len(state["items"])


# --- researchers ---------------------------------------------------------------------------------------


@pytest.fixture
def researchers(live_experiment, django_user_model):
    """alice owns the live experiment; bob is another (staff) researcher; root is a superuser."""
    alice = live_experiment.owner
    bob = django_user_model.objects.create_user("bob", password="pw-bob", is_staff=True)
    root = django_user_model.objects.create_superuser("root", "root@example.org", "pw-root")
    return {"exp": live_experiment, "alice": alice, "bob": bob, "root": root}


def _admin_urls(exp) -> list[str]:
    from webapp.crowd.models import Judgment
    from webapp.stimuli.models import ReferenceImage

    urls = ["/admin/", "/admin/auth/user/", "/admin/authtoken/tokenproxy/"]
    for model in ("experiments/experiment", "experiments/trial", "crowd/participant", "crowd/assignment",
                  "crowd/judgment", "stimuli/referenceimage", "stimuli/stimulus"):
        urls += [f"/admin/{model}/", f"/admin/{model}/add/"]
    urls.append(f"/admin/experiments/experiment/{exp.pk}/change/")
    urls.append(f"/admin/stimuli/referenceimage/{ReferenceImage.objects.first().pk}/change/")
    if Judgment.objects.exists():
        urls.append(f"/admin/crowd/judgment/{Judgment.objects.first().pk}/change/")
    return urls


def _lab_urls(exp) -> list[str]:
    return [reverse("lab:index"), reverse("lab:experiment", args=[exp.slug]),
            reverse("lab:plot", args=[exp.slug, "qc", "png"]), reverse("lab:export", args=[exp.slug]),
            reverse("lab:saliency", args=[exp.slug, 0]), f"/api/experiments/{exp.slug}/"]


def test_anonymous_and_non_staff_are_refused_everywhere(client, researchers):
    exp = researchers["exp"]
    anon = Client(raise_request_exception=False)
    for url in _admin_urls(exp):
        probe("access.anon", url, anon.get, url, expect={302})
        r = anon.get(url)
        assert r["Location"].startswith("/admin/login/"), url
    for url in _lab_urls(exp):
        r = probe("access.anon", url, anon.get, url, expect={302, 401})
        assert exp.title.encode() not in r.body
    probe("access.anon", "status POST", anon.post, reverse("lab:status", args=[exp.slug]),
          {"status": "closed"}, expect={302})
    researcher = Client(raise_request_exception=False)
    researcher.force_login(researchers["alice"])  # a researcher, but not staff: no admin at all
    for url in _admin_urls(exp):
        probe("access.nonstaff", url, researcher.get, url, expect={302})
    assert_clean("access.anon", 20)
    assert_clean("access.nonstaff", 15)


def test_staff_researcher_without_permissions_sees_no_one_in_admin(researchers):
    """bob is staff (as `load_demo` makes its researcher) but holds no model permissions: the admin
    shows him nothing, so it cannot be a side door to alice's experiment or her participants."""
    exp = researchers["exp"]
    bob = Client(raise_request_exception=False)
    bob.force_login(researchers["bob"])
    for url in _admin_urls(exp)[1:]:
        probe("access.staff", url, bob.get, url, expect={403})
    index = bob.get("/admin/")
    assert index.status_code == 200 and exp.slug.encode() not in index.content
    for url in _lab_urls(exp)[1:]:
        r = probe("access.staff", f"other researcher {url}", bob.get, url, expect={404})
        assert exp.title.encode() not in r.body
    assert_clean("access.staff", 20)


def test_staff_researcher_with_permissions_sees_only_own_experiments_in_admin(researchers):
    """A staff researcher granted view/change permissions on experiments and crowd data sees his own
    experiments' rows in the admin and none of another researcher's (superusers see everything)."""
    from django.contrib.auth.models import Permission

    from webapp.crowd.models import Assignment, Participant
    from webapp.experiments.models import Experiment

    exp, bob = researchers["exp"], researchers["bob"]
    bob.user_permissions.add(*Permission.objects.filter(
        content_type__app_label__in=["experiments", "crowd"], codename__startswith="view_"))
    own = Experiment.objects.create(slug="bobs-study", title="Bob's study", owner=bob, question="?")
    enter(Client(), exp)  # a participant + assignment in alice's experiment
    c = Client(raise_request_exception=False)
    c.force_login(bob)
    listing = c.get("/admin/experiments/experiment/")
    assert listing.status_code == 200 and b"bobs-study" in listing.content
    assert exp.slug.encode() not in listing.content
    assert c.get(f"/admin/experiments/experiment/{exp.pk}/change/").status_code == 302  # "does not exist"
    assert c.get(f"/admin/experiments/experiment/{own.pk}/change/").status_code == 200
    for model, obj in (("participant", Participant.objects.get(experiment=exp)),
                       ("assignment", Assignment.objects.get(experiment=exp))):
        assert c.get(f"/admin/crowd/{model}/{obj.pk}/change/").status_code == 302, model
    root = Client()
    root.force_login(researchers["root"])
    assert exp.slug.encode() in root.get("/admin/experiments/experiment/").content


def test_admin_cannot_upload_images(researchers, media_root):
    """Even a superuser cannot add references or stimuli through the admin (uploads would skip the
    import checks); existing rows can be relabelled but their files, hashes and sizes are read-only."""
    from webapp.stimuli.models import ReferenceImage

    root = Client(raise_request_exception=False)
    root.force_login(researchers["root"])
    files_before = sorted(p for p in media_root.rglob("*") if p.is_file())
    for model in ("referenceimage", "stimulus"):
        probe("access.upload", f"GET add {model}", root.get, f"/admin/stimuli/{model}/add/", expect={403})
        form = {"sha256": "../../etc/passwd", "original_name": "x.png", "split": "train", "width": 1,
                "height": 1, "file": SimpleUploadedFile("../../evil.png", b"<script>", "image/png")}
        probe("access.upload", f"POST add {model}", root.post, f"/admin/stimuli/{model}/add/", form,
              expect={403})
    ref = ReferenceImage.objects.first()
    page = root.get(f"/admin/stimuli/referenceimage/{ref.pk}/change/")
    assert page.status_code == 200
    for field in ("sha256", "file", "width", "height"):
        assert f'name="{field}"' not in page.content.decode(), field
    assert sorted(p for p in media_root.rglob("*") if p.is_file()) == files_before
    assert_clean("access.upload", 4)


# --- CSRF and rate limiting ------------------------------------------------------------------------------


def test_csrf_enforced_on_every_form(researchers):
    """Login (lab and admin), logout, the study status form and admin edits all refuse a POST without the
    CSRF token (the consent form and the status form have their own tests in crowd/ and lab/)."""
    exp = researchers["exp"]
    c = Client(enforce_csrf_checks=True, raise_request_exception=False)
    creds = {"username": "root", "password": "pw-root"}
    for url in (reverse("lab:login"), "/admin/login/"):
        probe("access.csrf", f"login {url}", c.post, url, creds, expect={403})
    assert "_auth_user_id" not in c.session
    c.force_login(researchers["root"])
    probe("access.csrf", "admin change", c.post, f"/admin/experiments/experiment/{exp.pk}/change/",
          {"slug": exp.slug, "title": "hijacked", "status": "closed"}, expect={403})
    probe("access.csrf", "admin delete", c.post, f"/admin/experiments/experiment/{exp.pk}/delete/",
          {"post": "yes"}, expect={403})
    probe("access.csrf", "status", c.post, reverse("lab:status", args=[exp.slug]), {"status": "closed"},
          expect={403})
    probe("access.csrf", "API with session, unsafe method", c.post, f"/api/experiments/{exp.slug}/", {},
          expect={403})
    probe("access.csrf", "logout", c.post, reverse("lab:logout"), expect={403})
    assert "_auth_user_id" in c.session  # still logged in: the forged logout did nothing
    exp.refresh_from_db()
    assert exp.status == "live" and exp.title != "hijacked"
    assert_clean("access.csrf", 7)


def test_entry_rate_limit_cannot_be_dodged(live_experiment, settings):
    """The limit counts GET and POST alike, 429s create nothing, and a forged X-Forwarded-For does not
    buy a fresh budget: ignored without a trusted proxy, and only the proxy-appended entry counts with one."""
    from webapp.crowd.models import Participant

    settings.CROWD_RATE_LIMIT, settings.CROWD_RATE_WINDOW = 4, 10**6  # no window boundary mid-test
    url = f"/p/{live_experiment.slug}/"
    c = Client(raise_request_exception=False)
    codes = [c.get(url, HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code for i in range(3)]
    codes.append(c.post(url, {"consent": "yes"}, HTTP_X_FORWARDED_FOR="10.9.9.9").status_code)
    assert codes == [200, 200, 200, 302]
    assert Participant.objects.count() == 1
    for i in range(6):  # new forged addresses, a new session, POST or GET: all refused now
        fresh = Client(raise_request_exception=False)
        send = fresh.post if i % 2 else fresh.get
        probe("access.ratelimit", f"forged XFF #{i}", send, url, {"consent": "yes"},
              HTTP_X_FORWARDED_FOR=f"203.0.113.{i}", expect={429})
    settings.CROWD_TRUSTED_PROXY_HOPS = 1  # behind one proxy: it appends the real client to the header
    for _ in range(5):
        c.get(url, HTTP_X_FORWARDED_FOR="198.51.100.7")
    for i in range(4):
        probe("access.ratelimit", f"client prepends #{i}", Client(raise_request_exception=False).post, url,
              {"consent": "yes"}, HTTP_X_FORWARDED_FOR=f"1.1.1.{i}, 198.51.100.7", expect={429})
    assert Participant.objects.count() == 1
    assert_clean("access.ratelimit", 10)
