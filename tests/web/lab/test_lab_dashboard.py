"""Dashboard: login required, ownership (404 for others), plots, CSRF-protected status change, zip export."""

import io
import zipfile

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def login(client, user, pw):
    assert client.login(username=user.username, password=pw)
    return client


def test_login_required(world, client):
    for url in (reverse("lab:index"), reverse("lab:experiment", args=["exp1"]),
                reverse("lab:plot", args=["exp1", "qc", "png"]), reverse("lab:export", args=["exp1"])):
        r = client.get(url)
        assert r.status_code == 302 and r["Location"].startswith(reverse("lab:login")), url
    r = client.post(reverse("lab:status", args=["exp1"]), {"status": "closed"})
    assert r.status_code == 302
    world.exp.refresh_from_db()
    assert world.exp.status == "live"


def test_login_page_logs_in(world, client, users):
    r = client.get(reverse("lab:login"))
    assert r.status_code == 200 and b"csrfmiddlewaretoken" in r.content
    r = client.post(reverse("lab:login"), {"username": "alice", "password": "pw-alice"})
    assert r.status_code == 302 and r["Location"] == reverse("lab:index")


def test_owner_sees_list_and_page(judged, client, users):
    login(client, users["alice"], "pw-alice")
    r = client.get(reverse("lab:index"))
    assert r.status_code == 200 and b"exp1" in r.content and b"<progress" in r.content
    r = client.get(reverse("lab:experiment", args=["exp1"]))
    body = r.content.decode()
    assert r.status_code == 200
    assert "repeat consistency 0.00" in body  # the bad participant's flag reason
    assert "jpeg q=10" in body and "webp q=30" in body
    for name in ("timeline", "coverage", "qc", "winrate", "scale", "agreement"):
        assert reverse("lab:plot", args=["exp1", name, "png"]) in body


def test_other_researcher_gets_404(judged, client, users):
    from lab_factories import build_world

    build_world(users["bob"], slug="bobs")
    login(client, users["bob"], "pw-bob")
    r = client.get(reverse("lab:index"))
    assert b"bobs" in r.content and b"exp1" not in r.content
    for url in (reverse("lab:experiment", args=["exp1"]), reverse("lab:plot", args=["exp1", "qc", "png"]),
                reverse("lab:export", args=["exp1"])):
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("lab:status", args=["exp1"]), {"status": "closed"}).status_code == 404
    judged["world"].exp.refresh_from_db()
    assert judged["world"].exp.status == "live"


def test_superuser_sees_all(judged, client, users):
    from lab_factories import build_world

    build_world(users["bob"], slug="bobs")
    login(client, users["root"], "pw-root")
    r = client.get(reverse("lab:index"))
    assert b"bobs" in r.content and b"exp1" in r.content
    assert client.get(reverse("lab:experiment", args=["bobs"])).status_code == 200


@pytest.mark.parametrize("name", ["timeline", "coverage", "qc", "winrate", "scale", "agreement"])
def test_plots_png_and_svg(judged, client, users, name):
    login(client, users["alice"], "pw-alice")
    r = client.get(reverse("lab:plot", args=["exp1", name, "png"]))
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert Image.open(io.BytesIO(r.content)).size[0] > 200
    r = client.get(reverse("lab:plot", args=["exp1", name, "svg"]))
    assert r.status_code == 200 and r["Content-Type"] == "image/svg+xml" and b"<svg" in r.content
    assert "attachment" in r["Content-Disposition"]


def test_plots_of_empty_experiment_and_unknown_plot(world, client, users):
    login(client, users["alice"], "pw-alice")
    for name in ("timeline", "qc", "winrate", "scale", "agreement"):
        r = client.get(reverse("lab:plot", args=["exp1", name, "png"]))
        assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    assert client.get("/lab/e/exp1/plot/nope.png").status_code == 404
    assert client.get("/lab/e/exp1/plot/qc.gif").status_code == 404


def test_status_change_requires_csrf(world, users):
    c = Client(enforce_csrf_checks=True)
    login(c, users["alice"], "pw-alice")
    url = reverse("lab:status", args=["exp1"])
    assert c.post(url, {"status": "paused"}).status_code == 403
    world.exp.refresh_from_db()
    assert world.exp.status == "live"
    page = c.get(reverse("lab:experiment", args=["exp1"]))
    token = page.context["csrf_token"] if page.context else None
    token = token or c.cookies["csrftoken"].value
    r = c.post(url, {"status": "paused", "csrfmiddlewaretoken": str(token)})
    assert r.status_code == 302
    world.exp.refresh_from_db()
    assert world.exp.status == "paused"
    assert c.post(url, {"status": "bogus", "csrfmiddlewaretoken": str(token)}).status_code == 400
    assert c.get(url).status_code == 405
    world.exp.refresh_from_db()
    assert world.exp.status == "paused"


def test_export_zip_download(transactional_db, judged, client, users):
    """The export is built in the background (the task worker), its progress shown on the study's page,
    and the zip offered there once it is ready."""
    from lab_factories import run_tasks

    from webapp.lab.models import ExportJob

    login(client, users["alice"], "pw-alice")
    page = reverse("lab:experiment", args=["exp1"])
    assert client.get(reverse("lab:export", args=["exp1"])).status_code == 302  # starting one is a POST
    assert not ExportJob.objects.exists()
    r = client.post(reverse("lab:export", args=["exp1"]))
    assert r.status_code == 302 and r["Location"].endswith(page + "#exports")
    job = ExportJob.objects.get()
    html = client.get(page).content.decode()
    assert "queued" in html and 'http-equiv="refresh"' in html  # the page follows it
    assert client.get(reverse("lab:export-download", args=["exp1", job.id])).status_code == 409
    run_tasks()
    job.refresh_from_db()
    assert job.state == "done" and job.percent == 100, (job.state, job.error)
    html = client.get(page).content.decode()
    url = reverse("lab:export-download", args=["exp1", job.id])
    assert url in html and 'http-equiv="refresh"' not in html
    r = client.get(url)
    assert r.status_code == 200 and r["Content-Type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content)))
    names = z.namelist()
    assert "exp1/manifest.json" in names and "exp1/train/exp1/judge/000000.npy" in names
    assert sum(1 for _ in z.open("exp1/judgments.csv")) == 22 + 1
    client.post(reverse("lab:export", args=["exp1"]), {"exclude_flagged": "1"})
    run_tasks()
    job = ExportJob.objects.get(exclude_flagged=True)
    r = client.get(reverse("lab:export-download", args=["exp1", job.id]))
    z = zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content)))
    assert sum(1 for _ in z.open("exp1/judgments.csv")) == 14 + 1
