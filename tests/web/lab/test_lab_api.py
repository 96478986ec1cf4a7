"""REST API: token auth, anonymous refused, ownership, cursor pagination, QC, zip export, OpenAPI schema."""

import io
import json
import zipfile

import pytest
import yaml
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(users):
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=users['alice']).key}")
    return c


def test_anonymous_refused(judged):
    c = APIClient()
    for url in ("/api/experiments/", "/api/experiments/exp1/", "/api/experiments/exp1/judgments/",
                "/api/experiments/exp1/qc/", "/api/experiments/exp1/export/"):
        r = c.get(url)
        assert r.status_code == 401, url
        assert r["WWW-Authenticate"].startswith("Token")
    c.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert c.get("/api/experiments/").status_code == 401


def test_list_and_detail(judged, api, users):
    from lab_factories import build_world

    build_world(users["bob"], slug="bobs")
    r = api.get("/api/experiments/")
    assert r.status_code == 200
    assert [e["slug"] for e in r.json()] == ["exp1"]
    d = api.get("/api/experiments/exp1/").json()
    assert d["progress"]["judgments"] == 16 and d["progress"]["target_judgments"] == 18
    assert d["min_response_ms"] == 300
    assert api.get("/api/experiments/bobs/").status_code == 404
    assert api.get("/api/experiments/bobs/judgments/").status_code == 404
    assert api.get("/api/experiments/bobs/qc/").status_code == 404
    assert api.get("/api/experiments/bobs/export/").status_code == 404


def test_judgments_cursor_pagination(judged, api):
    from webapp.crowd.models import Judgment

    seen, url, pages = [], "/api/experiments/exp1/judgments/?page_size=4", 0
    while url:
        r = api.get(url)
        assert r.status_code == 200
        body = r.json()
        assert len(body["results"]) <= 4
        seen += body["results"]
        url, pages = body["next"], pages + 1
    assert pages == 6  # 22 judgments, 4 per page
    assert [j["id"] for j in seen] == sorted(Judgment.objects.values_list("id", flat=True))
    first = Judgment.objects.select_related("trial").get(id=seen[0]["id"])
    assert seen[0]["judgment"] == str(first.client_uuid)
    assert seen[0]["chosen"] == ("a" if first.chosen_id == first.trial.stimulus_a_id else "b")
    assert "PID-" not in json.dumps(seen)  # platform ids never leave in clear


def test_qc_endpoint(judged, api):
    body = api.get("/api/experiments/exp1/qc/").json()
    assert body["rules"]["min_response_ms"] == 300
    flagged = [p for p in body["participants"] if p["flagged"]]
    assert len(flagged) == 1 and flagged[0]["platform"] == "mturk" and len(flagged[0]["reasons"]) == 3


def test_export_endpoint(transactional_db, judged, api):
    """POST starts a background export (202); its URL tells the progress and, when done, the download."""
    from lab_factories import run_tasks

    r = api.post("/api/experiments/exp1/export/?exclude_flagged=1")
    assert r.status_code == 202, r.content
    job = r.json()
    assert job["state"] == "queued" and "download" not in job
    assert api.get(job["url"]).json()["state"] == "queued"
    assert [j["id"] for j in api.get("/api/experiments/exp1/export/").json()["exports"]] == [job["id"]]
    run_tasks()
    done = api.get(job["url"]).json()
    assert done["state"] == "done" and done["percent"] == 100, done
    r = api.get(done["download"])
    assert r.status_code == 200 and r["Content-Type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content)))
    manifest = json.loads(z.read("exp1/manifest.json"))
    assert manifest["counts"]["participants_excluded"] == 1


def test_session_auth_works(judged, client, users):
    client.login(username="alice", password="pw-alice")
    assert client.get("/api/experiments/").status_code == 200


def test_drf_create_token_command(users, capsys):
    call_command("drf_create_token", "alice")
    key = Token.objects.get(user=users["alice"]).key
    assert key in capsys.readouterr().out
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert c.get("/api/experiments/").status_code == 200


def test_openapi_schema_valid(db):
    from drf_spectacular.validation import validate_schema

    c = APIClient()
    r = c.get("/api/schema/")
    assert r.status_code == 200
    schema = yaml.safe_load(r.content)
    validate_schema(schema)
    paths = schema["paths"]
    for p in ("/api/experiments/", "/api/experiments/{slug}/", "/api/experiments/{slug}/judgments/",
              "/api/experiments/{slug}/qc/", "/api/experiments/{slug}/export/"):
        assert p in paths, p
    r = c.get("/api/schema/?format=json")
    assert json.loads(r.content)["openapi"].startswith("3.")
