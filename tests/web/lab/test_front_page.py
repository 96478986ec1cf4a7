"""``/``: what the site is, the researcher login, a word for a participant without a link; no study."""

from __future__ import annotations


def test_front_page(client, experiment_factory):
    exp = experiment_factory(slug="secret-study", title="Secret title")
    r = client.get("/")
    page = r.content.decode()
    assert r.status_code == 200 and r.headers["X-Frame-Options"] == "DENY"
    assert 'href="/lab/login/"' in page and "study link" in page
    assert exp.slug not in page and exp.title not in page and "/p/" not in page
    assert client.post("/").status_code == 405
