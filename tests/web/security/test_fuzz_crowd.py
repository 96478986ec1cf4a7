"""Hostile input on the participant side (plain Django views, not in the OpenAPI schema).

Every case goes through ``probe``: it must not answer 500, must answer inside the documented contract
(a 4xx for malformed input) and must leave every project table byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import math
import string
import uuid
from datetime import datetime
from urllib.parse import urlencode

import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.web.conftest import consent_form, enter
from tests.web.security.hostile import HTML_INJECTION, NASTY_TEXT, SQL_INJECTION, assert_clean, probe
from webapp.crowd.judging import EVENTS, MAX_EVENT_COUNT

FUZZ = hsettings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(NASTY_TEXT[:-7]),  # the 5000-char one is left to the size tests
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
    max_leaves=12,
)


def _is_uuid(v) -> bool:
    try:
        uuid.UUID(str(v))
    except ValueError:
        return False
    return True


def _iso_ok(v) -> bool:
    if v is None:
        return True
    try:
        datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def bad_field_values(n_items: int) -> dict[str, st.SearchStrategy]:
    """For each judgment field, values that the documented contract rejects."""
    not_int = JSON_VALUES.filter(lambda v: isinstance(v, bool) or not isinstance(v, int))
    return {
        "uuid": JSON_VALUES.filter(lambda v: not _is_uuid(v)),
        "position": st.one_of(
            not_int,
            st.integers(max_value=-1),
            st.integers(min_value=2**31),
            st.integers(min_value=n_items, max_value=2**31 - 1),  # no such item
        ),
        "choice": JSON_VALUES.filter(lambda v: v not in ("left", "right")),
        "response_ms": st.one_of(not_int, st.integers(max_value=-1), st.integers(min_value=2**31)),
        "events": st.one_of(
            JSON_VALUES.filter(lambda v: v is not None and not isinstance(v, dict)),
            st.dictionaries(st.text(max_size=10).filter(lambda k: k not in EVENTS), JSON_SCALARS, min_size=1,
                            max_size=3),
            st.dictionaries(st.sampled_from(EVENTS), JSON_VALUES.filter(
                lambda v: isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_EVENT_COUNT),
                min_size=1, max_size=3),
        ),
        "client_time": st.one_of(
            JSON_VALUES.filter(lambda v: not _iso_ok(v)),
            st.sampled_from(
                ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2026-02-30T00:00:00Z",
                 "2026-01-01T25:00:00Z", "2026-01-01T00:00:00+24:00"]
            ),
        ),
    }


@pytest.fixture
def judged_assignment(client, live_experiment):
    """An assignment (open link) whose position 0 is already judged with a known uuid."""
    a = enter(client, live_experiment)
    used = uuid.uuid4()
    body = {"uuid": str(used), "position": 0, "choice": "left", "response_ms": 900,
            "client_time": "2026-01-01T12:00:00Z"}
    r = client.post(f"/a/{a.token}/judge", json.dumps(body), content_type="application/json",
                    headers={"X-Assignment-Token": str(a.token)})
    assert r.status_code == 201
    return a, used


def _valid_body(position: int = 1) -> dict:
    return {"uuid": str(uuid.uuid4()), "position": position, "choice": "right", "response_ms": 750,
            "client_time": "2026-01-01T12:00:00Z"}


def test_fuzz_judgment_payloads(raw_client, judged_assignment):
    a, used = judged_assignment
    n_items = a.items.count()
    url, hdr = f"/a/{a.token}/judge", {"X-Assignment-Token": str(a.token)}
    bad = bad_field_values(n_items)

    def send_json(label: str, value) -> None:
        text = json.dumps(value, allow_nan=True)
        probe("crowd.judge.json", label + " " + text,
              lambda: raw_client.post(url, text, content_type="application/json", headers=hdr))

    @FUZZ
    @given(field=st.sampled_from(sorted(bad)), data=st.data(), extra=st.dictionaries(
        st.sampled_from(["pad", "id", "assignment", "trial", "chosen", "__proto__"]), JSON_SCALARS,
        max_size=2))
    def one_bad_field(field, data, extra):
        body = {**_valid_body(position=1 + data.draw(st.integers(0, n_items - 2))), **extra}
        body[field] = data.draw(bad[field], label=field)
        send_json(f"bad {field}", body)

    @FUZZ
    @given(field=st.sampled_from(["uuid", "position", "choice", "response_ms"]))
    def missing_field(field):
        body = _valid_body()
        del body[field]
        send_json(f"missing {field}", body)

    @FUZZ
    @given(value=JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
    def not_an_object(value):
        send_json("not an object", value)

    @FUZZ
    @given(position=st.integers(1, n_items - 1), choice=st.sampled_from(["left", "right"]))
    def reused_uuid(position, choice):  # the uuid of the stored judgment, other content: 409
        send_json("reused uuid", {**_valid_body(position), "uuid": str(used), "choice": choice})

    @hsettings(FUZZ, max_examples=40)
    @given(raw=st.binary(max_size=300))
    def raw_bytes(raw):
        probe("crowd.judge.bytes", repr(raw),
              lambda: raw_client.post(url, raw, content_type="application/json", headers=hdr))

    one_bad_field()
    missing_field()
    not_an_object()
    reused_uuid()
    raw_bytes()
    assert_clean("crowd.judge", 100)


def test_transport_level_abuse(raw_client, judged_assignment, live_experiment):
    """Oversized and lying bodies, wrong content types, missing or foreign tokens, wrong methods."""
    a, _ = judged_assignment
    other = enter(Client(), live_experiment)
    url, hdr = f"/a/{a.token}/judge", {"X-Assignment-Token": str(a.token)}
    valid = json.dumps(_valid_body())
    post = raw_client.post

    cases = {
        "body 5 KB": lambda: post(url, json.dumps({**_valid_body(), "pad": "x" * 5000}),
                                  content_type="application/json", headers=hdr),
        "body 2 MB": lambda: post(url, "[" + "1," * 1_000_000 + "1]", content_type="application/json",
                                  headers=hdr),
        "Content-Length 10^12": lambda: post(url, valid, content_type="application/json", headers=hdr,
                                             CONTENT_LENGTH="1000000000000"),
        "Content-Length shorter than body": lambda: post(url, valid, content_type="application/json",
                                                         headers=hdr, CONTENT_LENGTH="20"),
        "Content-Length not a number": lambda: post(url, valid, content_type="application/json",
                                                    headers=hdr, CONTENT_LENGTH="abc"),
        "Content-Length negative": lambda: post(url, valid, content_type="application/json", headers=hdr,
                                                CONTENT_LENGTH="-5"),
        "nested 2000 deep": lambda: post(url, "[" * 2000 + "]" * 2000, content_type="application/json",
                                         headers=hdr),
        "nested object 1500 deep": lambda: post(url, '{"a":' * 1500 + "1" + "}" * 1500,
                                                content_type="application/json", headers=hdr),
        "UTF-8 BOM": lambda: post(url, b"\xef\xbb\xbf" + valid.encode(), content_type="application/json",
                                  headers=hdr),
        "UTF-16": lambda: post(url, valid.encode("utf-16"), content_type="application/json", headers=hdr),
        "Latin-1 garbage": lambda: post(url, b'{"uuid": "\xff\xfe"}', content_type="application/json",
                                        headers=hdr),
        "NaN position": lambda: post(url, valid.replace('"position": 1', '"position": NaN'),
                                     content_type="application/json", headers=hdr),
        "1e400 response_ms": lambda: post(url, valid.replace('"response_ms": 750', '"response_ms": 1e400'),
                                          content_type="application/json", headers=hdr),
        "client_time year 10000 in UTC": lambda: post(url, json.dumps(
            {**_valid_body(), "client_time": "9999-12-31T23:59:59-14:00"}), content_type="application/json",
            headers=hdr),
        "client_time year 0 in UTC": lambda: post(url, json.dumps(
            {**_valid_body(), "client_time": "0001-01-01T00:00:00+14:00"}), content_type="application/json",
            headers=hdr),
        "no token header": lambda: post(url, valid, content_type="application/json"),
        "empty token header": lambda: post(url, valid, content_type="application/json",
                                           headers={"X-Assignment-Token": ""}),
        "other assignment's token": lambda: post(url, valid, content_type="application/json",
                                                 headers={"X-Assignment-Token": str(other.token)}),
        "token header upper case": lambda: post(url, valid, content_type="application/json",
                                                headers={"X-Assignment-Token": str(a.token).upper()}),
        "token in body only": lambda: post(url, json.dumps({**_valid_body(), "token": str(a.token)}),
                                           content_type="application/json"),
        "unknown assignment": lambda: post(f"/a/{uuid.uuid4()}/judge", valid, content_type="application/json",
                                           headers=hdr),
        "GET judge": lambda: raw_client.get(url, headers=hdr),
        "PUT judge": lambda: raw_client.put(url, valid, content_type="application/json", headers=hdr),
        "DELETE judge": lambda: raw_client.delete(url, headers=hdr),
        "PATCH device": lambda: raw_client.patch(f"/a/{a.token}/device", "{}", headers=hdr),
        "GET complete": lambda: raw_client.get(f"/a/{a.token}/complete", headers=hdr),
        "POST state": lambda: post(f"/a/{a.token}/state", valid, content_type="application/json",
                                   headers=hdr),
        "POST image": lambda: post(f"/a/{a.token}/img/1/left", valid, content_type="application/json",
                                   headers=hdr),
    }
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=xx",
                  "application/xml", "application/jsonp", "text/html", ""):
        cases[f"valid JSON as {ctype!r}"] = lambda c=ctype: post(url, valid, content_type=c, headers=hdr)
        cases[f"device JSON as {ctype!r}"] = lambda c=ctype: post(
            f"/a/{a.token}/device", json.dumps({"dpr": 1}), content_type=c, headers=hdr)
    cases["form-encoded judgment"] = lambda: post(url, _valid_body(), headers=hdr)  # multipart form
    for label, send in cases.items():
        probe("crowd.transport", label, send)
    assert_clean("crowd.transport", 40)


def test_fuzz_device_payloads(raw_client, judged_assignment):
    a, _ = judged_assignment
    url, hdr = f"/a/{a.token}/device", {"X-Assignment-Token": str(a.token)}
    bad_dpr = st.one_of(
        JSON_VALUES.filter(lambda v: isinstance(v, bool) or not isinstance(v, (int, float))),
        st.floats().filter(lambda v: math.isnan(v) or not 0 < v < 100),
        st.integers().filter(lambda v: not 0 < v < 100),
    )

    @FUZZ
    @given(dpr=bad_dpr, viewport=JSON_VALUES, screen=JSON_VALUES, ua=st.sampled_from(NASTY_TEXT))
    def bad_device(dpr, viewport, screen, ua):
        body = json.dumps({"dpr": dpr, "viewport": viewport, "screen": screen}, allow_nan=True)
        probe("crowd.device", body,
              lambda: raw_client.post(url, body, content_type="application/json", headers=hdr,
                                      HTTP_USER_AGENT=ua.replace("\x00", "")[:200]))

    bad_device()
    assert_clean("crowd.device", 50)


def test_fuzz_paths(raw_client, judged_assignment):
    """Unknown tokens, positions and sides on every GET view: 404, never 500, nothing stored."""
    a, _ = judged_assignment
    segment = st.text(alphabet=string.ascii_letters + string.digits + "-_.~%", min_size=1, max_size=30)

    @FUZZ
    @given(position=st.one_of(st.integers(-5, 10**30).map(str), segment), side=segment)
    def bad_image(position, side):
        if position.isdigit() and int(position) < a.items.count() and side in ("left", "right", "ref"):
            side += "x"
        probe("crowd.path", f"img {position}/{side}",
              lambda: raw_client.get(f"/a/{a.token}/img/{position}/{side}"), expect={404})

    @hsettings(FUZZ, max_examples=30)
    @given(token=st.one_of(st.uuids().map(str), segment),
           view=st.sampled_from(["", "state", "done", "img/0/left"]))
    def bad_token(token, view):
        probe("crowd.path", f"token {token}/{view}", lambda: raw_client.get(f"/a/{token}/{view}"),
              expect={404})

    bad_image()
    bad_token()
    assert_clean("crowd.path", 60)


@pytest.mark.parametrize("platform", ["prolific", "mturk"])
def test_fuzz_entry_parameters(raw_client, experiment_factory, settings, platform):
    """Study-link parameters: hostile values never crash the entry page or create anything on GET;
    a consent POST with unusable ids or without consent is a 4xx that creates nothing."""
    settings.CROWD_RATE_LIMIT = 0  # the limiter has its own tests; here every request must reach the view
    exp = experiment_factory(platform=platform)
    url = f"/p/{exp.slug}/"
    keys = (["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"] if platform == "prolific"
            else ["workerId", "assignmentId", "hitId", "turkSubmitTo"])
    value = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=300))

    @FUZZ
    @given(params=st.dictionaries(st.sampled_from(keys + ["consent", "x"]), value, max_size=5))
    def get_entry(params):
        probe(f"crowd.entry.{platform}.get", repr(params), lambda: raw_client.get(url, params),
              expect={200, 400})

    id_key = keys[0]
    unusable = st.one_of(st.sampled_from(["", " ", "\t\n", "\x00", "a\x00b", "x" * 250 + "\x00"]),
                         st.text(max_size=30).map(lambda s: s + "\x00"))

    @FUZZ
    @given(pid=unusable, consent=st.sampled_from(["yes", "no", "", "YES", "yes\x00"]),
           extra=st.dictionaries(st.sampled_from(keys[1:]), value, max_size=2))
    def post_unusable_id(pid, consent, extra):
        form = {**extra, id_key: pid, "consent": consent}
        if platform == "mturk":
            form.setdefault("assignmentId", "A1")
            form.pop("turkSubmitTo", None)
        probe(f"crowd.entry.{platform}.post", repr(form), lambda: raw_client.post(url, form))

    @hsettings(FUZZ, max_examples=25)
    @given(pid=st.sampled_from(SQL_INJECTION + HTML_INJECTION), consent=st.text(max_size=5).filter(
        lambda s: s != "yes"))
    def post_without_consent(pid, consent):
        form = {id_key: pid, "consent": consent, "assignmentId": "A1"}
        probe(f"crowd.entry.{platform}.post", repr(form), lambda: raw_client.post(url, form))

    get_entry()
    post_unusable_id()
    post_without_consent()
    probe(f"crowd.entry.{platform}.post", "unknown slug", lambda: raw_client.post("/p/no-such/", {}))
    probe(f"crowd.entry.{platform}.post", "non-slug", lambda: raw_client.get("/p/..%2F..%2Fetc/"))
    assert not exp.participants.exists() and not exp.assignments.exists()
    assert_clean(f"crowd.entry.{platform}", 100)


def test_injection_in_study_ids_is_stored_verbatim_and_escaped(client, experiment_factory, settings):
    """SQL/HTML in platform ids is data: stored byte-for-byte, shown escaped, other rows untouched."""
    from webapp.crowd.models import Participant

    settings.CROWD_RATE_LIMIT = 0
    exp = experiment_factory(platform="prolific")
    for i, payload in enumerate(SQL_INJECTION + HTML_INJECTION):
        pid = f"{payload}-{i}"
        page = client.get(f"/p/{exp.slug}/", {"PROLIFIC_PID": pid, "STUDY_ID": payload})
        assert page.status_code == 200
        assert b"<script>alert" not in page.content and b"onerror=alert(1)>" not in page.content
        r = Client().post(f"/p/{exp.slug}/", {"PROLIFIC_PID": pid, "STUDY_ID": payload, "consent": "yes"})
        assert r.status_code == 302, r.content[:200]
        p = Participant.objects.get(experiment=exp, platform_id=pid)
        assert p.study_id == payload
    assert Participant.objects.filter(experiment=exp).count() == len(SQL_INJECTION + HTML_INJECTION)


def test_nul_in_user_agent_is_dropped_not_a_500(raw_client, judged_assignment):
    a, _ = judged_assignment
    r = raw_client.post(f"/a/{a.token}/device", json.dumps({"dpr": 2}), content_type="application/json",
                        headers={"X-Assignment-Token": str(a.token)}, HTTP_USER_AGENT="Evil\x00UA/1.0")
    assert r.status_code == 200
    a.refresh_from_db()
    assert a.device["user_agent"] == "EvilUA/1.0"


def test_long_platform_id_resumes_the_same_assignment(client, experiment_factory):
    """A PROLIFIC_PID longer than the column resumes the one assignment instead of making a second."""
    exp = experiment_factory(platform="prolific")
    pid = "P" * 300
    first = enter(client, exp, PROLIFIC_PID=pid)
    again = client.get(f"/p/{exp.slug}/", {"PROLIFIC_PID": pid})
    assert again.status_code == 302 and again["Location"] == f"/a/{first.token}/"
    assert exp.assignments.count() == 1


def test_long_mturk_assignment_id_is_not_a_500(raw_client, experiment_factory):
    exp = experiment_factory(platform="mturk")
    link = f"/p/{exp.slug}/?" + urlencode({"workerId": "W1", "assignmentId": "A" * 400, "hitId": "H" * 400})
    r = raw_client.post(link, {**consent_form(raw_client, link), "consent": "yes"},
                        headers={"Origin": "http://testserver"})
    assert r.status_code == 302
    assert exp.assignments.get().mturk_assignment_id == "A" * 200
