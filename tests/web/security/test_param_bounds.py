"""Parameters that reach int(), a query or a path are bounds-checked: 400/404, never a 500, nothing changes.

Cursors with non-numeric or out-of-range positions, page sizes with thousands of digits, image and
reference indexes beyond PostgreSQL's integer and bigint ranges.
"""

from __future__ import annotations

import json
import uuid
from base64 import b64encode

import pytest
from rest_framework.authtoken.models import Token

from tests.web.conftest import enter
from tests.web.security.hostile import assert_clean, probe

# past integer, bigint, unsigned bigint; 5,000 digits also exceed int()'s default limit on digits
BIG = [str(2**31), str(2**63), str(2**64), "1" + "0" * 30, "9" * 5000]


def _cursor(query: str) -> str:
    return b64encode(query.encode("ascii")).decode("ascii")


@pytest.fixture
def api_world(client, live_experiment):
    """The live experiment with two judgments and a token for its owner."""
    a = enter(client, live_experiment)
    for position in (0, 1):
        body = {"uuid": str(uuid.uuid4()), "position": position, "choice": "left", "response_ms": 700}
        r = client.post(f"/a/{a.token}/judge", json.dumps(body), content_type="application/json",
                        headers={"X-Assignment-Token": str(a.token)})
        assert r.status_code == 201
    key = Token.objects.create(user=live_experiment.owner).key
    return {"exp": live_experiment, "a": a, "auth": {"HTTP_AUTHORIZATION": f"Token {key}"}}


def test_cursor_positions_must_be_integers_in_range(raw_client, api_world):
    url, auth = f"/api/experiments/{api_world['exp'].slug}/judgments/", api_world["auth"]
    bad = ["p=abc", "p=1.5", "p=", "p=-1", "p=%EF%BC%91", "p=1e3", "p=0x10", "o=abc", "r=abc", "o=-1",
           "r=2", "p=1&p=2", *(f"p={n}" for n in BIG[1:]), *(f"o={n}" for n in BIG), "r=" + "1" * 5000]
    for query in bad:
        r = probe("bounds.cursor", query[:40], raw_client.get, url, {"cursor": _cursor(query)}, **auth,
                  expect={404})
        assert b"Invalid cursor" in r.body, (query[:40], r.body[:200])
    assert_clean("bounds.cursor", len(bad))
    # well-formed cursors still page (DRF's own next link round-trips)
    first = raw_client.get(url, {"page_size": 1}, **auth).json()
    assert len(first["results"]) == 1 and first["next"]
    second = raw_client.get(first["next"], **auth).json()
    assert [j["id"] for j in second["results"]] != [j["id"] for j in first["results"]]


def test_page_size_is_an_integer_from_1_to_the_maximum(raw_client, api_world):
    url, auth = f"/api/experiments/{api_world['exp'].slug}/judgments/", api_world["auth"]
    bad = ["0", "-1", "1.0", "abc", "", " 5", "１", "1001", str(2**63), "9" * 5000]
    for size in bad:
        r = probe("bounds.page_size", size[:40], raw_client.get, url, {"page_size": size}, **auth,
                  expect={400})
        assert b"page_size" in r.body, (size[:40], r.body[:200])
    assert_clean("bounds.page_size", len(bad))
    for size in ("1", "1000", "0007"):
        assert raw_client.get(url, {"page_size": size}, **auth).status_code == 200, size


def test_image_positions_beyond_integer_ranges_are_404(raw_client, api_world):
    a = api_world["a"]
    for n in BIG:
        for side in ("left", "ref"):
            r = probe("bounds.image", f"{n[:30]}/{side}", raw_client.get, f"/a/{a.token}/img/{n}/{side}",
                      expect={404})
            assert r.status == 404
    assert_clean("bounds.image", 2 * len(BIG))
    assert raw_client.get(f"/a/{a.token}/img/0/left").status_code == 200


def test_saliency_index_beyond_integer_ranges_is_404(raw_client, api_world):
    exp = api_world["exp"]
    raw_client.force_login(exp.owner)
    for n in BIG:
        probe("bounds.saliency", n[:30], raw_client.get, f"/lab/e/{exp.slug}/saliency/{n}.png",
              expect={404})
    assert_clean("bounds.saliency", len(BIG))


def test_judge_position_beyond_integer_range_is_400(raw_client, api_world):
    a = api_world["a"]
    for n in BIG[:-1] + ["9" * 3900]:  # the body limit is 4 KB
        body = json.dumps({"uuid": str(uuid.uuid4()), "position": 0, "choice": "left", "response_ms": 700})
        body = body.replace('"position": 0', f'"position": {n}')
        probe("bounds.judge", n[:30], raw_client.post, f"/a/{a.token}/judge", body,
              content_type="application/json", headers={"X-Assignment-Token": str(a.token)}, expect={400})
    assert_clean("bounds.judge", len(BIG))
