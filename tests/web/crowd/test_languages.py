"""Participant pages in the study's language (``language:`` in the experiment file; English and German ship).

Every participant page (consent, MTurk's HIT preview, decline, refusal, judging page with its withdraw step,
withdrawn, done, and every message page) is rendered for an English and a German twin study whose
researcher-written texts are marked ``RESEARCHER-``: the German page must show no English msgid of the
catalogs, and no text that the English page shows too (which catches a string nobody marked for
translation). The catalogs must be complete and their committed ``.mo`` files must match the ``.po``.
The JavaScript catalog must translate every string ``task.js`` shows.
"""

from __future__ import annotations

import gettext as gnu
import json
import re
import uuid
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

LOCALE = Path(__file__).resolve().parents[3] / "webapp" / "crowd" / "locale" / "de" / "LC_MESSAGES"
TASK_JS = Path(__file__).resolve().parents[3] / "webapp" / "crowd" / "static" / "crowd" / "task.js"
RESEARCHER = {"title": "RESEARCHER-TITLE", "question": "RESEARCHER-QUESTION",
              "consent_text": "RESEARCHER-CONSENT", "instructions_text": "RESEARCHER-INSTRUCTIONS",
              "completion_code": "RESEARCHER-CODE"}
VIEWING = {"min_viewport": [1000, 700], "pixel_ratios": [1, 2], "mobile": False, "fullscreen": True}
OWN = {"Origin": "http://testserver"}
GOOD = json.dumps({"viewport": [1280, 800], "dpr": 1, "mobile": False, "fullscreen": True})
SMALL = json.dumps({"viewport": [800, 600], "dpr": 1.5, "mobile": True, "fullscreen": False})
MTURK = {"hitId": "H-1", "turkSubmitTo": "https://workersandbox.mturk.com"}
# texts that are the same in every language: names, keys, what the researcher wrote
SAME_EVERYWHERE = re.compile(r"RESEARCHER-|^(Prolific|Amazon MTurk|[←→]|[\W\d_]*)$")


# --- the catalogs ------------------------------------------------------------------------------------------


def _unquote(lines: list[str]) -> str:
    return "".join(json.loads(line) for line in lines)


def read_po(path: Path) -> list[dict]:
    """The entries of a .po file: ``msgid``, ``plural`` (or None), ``msgstr`` (a list), ``flags``."""
    entries = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, list[str]] = {}
        flags, cur = "", None
        for line in block.splitlines():
            if line.startswith("#,"):
                flags += line
            m = re.match(r'^(msgid|msgid_plural|msgstr(?:\[\d\])?) (".*")$', line)
            if m:
                cur = m[1]
                fields[cur] = [m[2]]
            elif line.startswith('"') and cur:
                fields[cur].append(line)
        if "msgid" not in fields:
            continue
        strs = [_unquote(v) for k, v in sorted(fields.items()) if k.startswith("msgstr")]
        entries.append({"msgid": _unquote(fields["msgid"]), "plural": _unquote(fields["msgid_plural"])
                        if "msgid_plural" in fields else None, "msgstr": strs, "flags": flags})
    return [e for e in entries if e["msgid"]]  # not the header


def english_msgids() -> list[str]:
    """Every English text of both catalogs whose German differs (singular and plural forms)."""
    out = []
    for name in ("django.po", "djangojs.po"):
        for e in read_po(LOCALE / name):
            for english in filter(None, (e["msgid"], e["plural"])):
                if english not in e["msgstr"]:
                    out.append(english)
    return out


def task_js_msgids() -> set[str]:
    return {json.loads(f'"{s}"') for s in re.findall(r'_\("((?:[^"\\]|\\.)*)"\)', TASK_JS.read_text())}


@pytest.mark.parametrize("name", ["django", "djangojs"])
def test_every_msgid_has_a_german_text_and_the_mo_matches(name):
    entries = read_po(LOCALE / f"{name}.po")
    assert entries
    for e in entries:
        assert "fuzzy" not in e["flags"], e["msgid"]
        assert e["msgstr"] and all(s.strip() for s in e["msgstr"]), f"no German for {e['msgid']!r}"
        assert len(e["msgstr"]) == (2 if e["plural"] else 1), e["msgid"]
    with open(LOCALE / f"{name}.mo", "rb") as f:
        compiled = gnu.GNUTranslations(f)._catalog
    expected = {}
    for e in entries:
        if e["plural"]:
            expected.update({(e["msgid"], i): s for i, s in enumerate(e["msgstr"])})
        else:
            expected[e["msgid"]] = e["msgstr"][0]
    assert {k: v for k, v in compiled.items() if k != ""} == expected, "compile the .po (compilemessages)"


def test_the_javascript_catalog_translates_every_string_of_task_js(client):
    wanted = task_js_msgids()
    assert len(wanted) >= 15 and "Practice:" in wanted
    assert wanted == {e["msgid"] for e in read_po(LOCALE / "djangojs.po")}  # none missing, none stale
    r = client.get("/i18n/de.js")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/javascript")
    catalog = json.loads(re.search(r"const newcatalog = (\{.*?\});", r.content.decode(), re.S)[1])
    for msgid in wanted:
        assert catalog.get(msgid) and catalog[msgid] != msgid, msgid
    english = client.get("/i18n/en.js").content.decode()
    assert "globals.gettext = django.gettext" in english and "newcatalog" not in english  # msgids as they are
    assert client.get("/i18n/fr.js").status_code == 404


# --- the pages ---------------------------------------------------------------------------------------------


class _Text(HTMLParser):
    """The text a participant sees or hears: text outside scripts and styles, the title, and the alt,
    aria-label, title and placeholder attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.segments: list[str] = []
        self._skip = 0
        self.lang = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if tag in ("script", "style"):
            self._skip += 1
        for k in ("alt", "aria-label", "title", "placeholder"):
            if a.get(k):
                self.segments.append(a[k])

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        text = " ".join(data.split())
        if text and not self._skip:
            self.segments.append(text)


def visible(html: str) -> _Text:
    p = _Text()
    p.feed(html)
    return p


def _entry(client: Client, exp, params: dict | None = None, viewing: str | None = None, consent: bool = True,
           **extra):
    """The consent form of ``exp``'s link (with ``params``) posted back as the page sends it."""
    url = f"/p/{exp.slug}/" + ("?" + urlencode(params) if params else "")
    page = client.get(url).content.decode()
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    if viewing is not None:
        form["viewing"] = viewing
    if consent:
        form["consent"] = "yes"
    return client.post(url, {**form, **extra}, headers=OWN)


def _judge_all(client: Client, token: str, n: int) -> None:
    for position in range(n):
        body = {"uuid": str(uuid.uuid4()), "position": position, "choice": "left", "response_ms": 900,
                "events": {"focus_lost": 0}}
        r = client.post(f"/a/{token}/judge", json.dumps(body), content_type="application/json",
                        headers={"X-Assignment-Token": token})
        assert r.status_code == 201, r.content


def _finish(client: Client, token: str) -> str:
    from webapp.crowd.models import Assignment

    _judge_all(client, token, Assignment.objects.get(token=token).items.count())
    r = client.post(f"/a/{token}/complete", headers={"X-Assignment-Token": token, **OWN})
    assert r.status_code == 200, r.content
    return client.get(r.json()["done_url"]).content.decode()


def _token(response) -> str:
    assert response.status_code == 302, response.content[:300]
    return response["Location"].rstrip("/").split("/")[-1]


def participant_pages(factory, lang: str, settings, owner) -> dict[str, str]:
    """Every participant page of a ``lang`` study (and the researcher's preview of it), by name."""
    from webapp.crowd.models import Assignment

    settings.CROWD_RATE_LIMIT = 0
    cache.clear()
    kw = {"language": lang, **RESEARCHER}
    open_ = factory(slug=f"{lang}-open", viewing=VIEWING, **kw)
    prolific = factory(slug=f"{lang}-prolific", platform="prolific",
                       completion_url="https://app.prolific.com/submissions/complete", **kw)
    mturk = factory(slug=f"{lang}-mturk", platform="mturk", trials_per_assignment=6, **kw)
    pages: dict[str, str] = {}

    def page(name: str, response) -> None:
        pages[name] = response.content.decode()

    c = Client()
    page("consent, with what the device needs", c.get(f"/p/{open_.slug}/"))
    page("refused for the device", _entry(c, open_, viewing=SMALL))
    page("declined", c.post(f"/p/{open_.slug}/", {"decline": "1"}))
    page("consent required", _entry(c, open_, viewing=GOOD, consent=False))
    page("invalid consent form", _entry(c, open_, viewing=GOOD, entry="tampered"))
    page("invalid study link", c.get(f"/p/{open_.slug}/?x=a%00b"))
    token = _token(_entry(c, open_, viewing=GOOD))
    page("judging page, with its withdraw step and pause messages", c.get(f"/a/{token}/"))
    pages["done (open link)"] = _finish(c, token)

    pid = {"PROLIFIC_PID": "P-1", "STUDY_ID": "S", "SESSION_ID": "X"}
    page("consent (Prolific)", Client().get(f"/p/{prolific.slug}/?" + urlencode(pid)))
    page("missing link parameters (Prolific)", Client().get(f"/p/{prolific.slug}/"))
    c = Client()
    pages["done, back to Prolific"] = _finish(c, _token(_entry(c, prolific, pid)))
    c = Client()
    token = _token(_entry(c, prolific, {**pid, "PROLIFIC_PID": "P-2"}))
    r = c.post(f"/a/{token}/withdraw", json.dumps({"confirm": True}), content_type="application/json",
               headers={"X-Assignment-Token": token, **OWN})
    page("withdrawn", c.get(r.json()["page"]))
    page("withdrawn, link not valid", c.get(f"/p/{prolific.slug}/withdrawn/?r=forged"))
    c = Client()
    token = _token(_entry(c, prolific, {**pid, "PROLIFIC_PID": "P-3"}))
    Assignment.objects.filter(token=token).update(expires_at=timezone.now() - timedelta(minutes=1))
    page("assignment expired", c.get(f"/a/{token}/"))
    token = _token(_entry(Client(), prolific, {**pid, "PROLIFIC_PID": "P-4"}))
    for status in ("draft", "paused", "closed"):
        prolific.status = status
        prolific.save(update_fields=["status"])
        page(f"study {status}", Client().get(f"/p/{prolific.slug}/?" + urlencode(pid)))
        page(f"judging page, study {status}", Client().get(f"/a/{token}/"))
    prolific.status = "live"
    prolific.save(update_fields=["status"])

    ids = {**MTURK, "workerId": "W-1", "assignmentId": "AS-1"}
    page("MTurk's HIT preview", Client().get(f"/p/{mturk.slug}/?" + urlencode(
        {**ids, "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"})))
    page("consent posted to a HIT preview", _entry(Client(), mturk, {**ids, "assignmentId":
                                                                      "ASSIGNMENT_ID_NOT_AVAILABLE"}))
    page("missing link parameters (MTurk)", Client().get(f"/p/{mturk.slug}/"))
    url = f"/p/{mturk.slug}/?" + urlencode(ids)
    hidden = Client().get(url).content.decode()
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', hidden))
    page("consent form not from this site (MTurk)", Client().post(url, {**form, "consent": "yes"}))
    c = Client()
    pages["done, submit to MTurk"] = _finish(c, _token(_entry(c, mturk, ids)))
    page("no more trials", _entry(Client(), mturk, {**ids, "assignmentId": "AS-2"}))

    settings.CROWD_RATE_LIMIT = 1
    cache.clear()
    Client().get(f"/p/{open_.slug}/")
    page("too many requests", Client().get(f"/p/{open_.slug}/"))
    settings.CROWD_RATE_LIMIT = 0

    r = Client()
    r.force_login(owner)
    base = f"/lab/e/{open_.slug}/preview/"
    page("preview: consent", r.get(base))
    page("preview: refused", r.post(base, {"consent": "yes", "viewing": SMALL}))
    page("preview: judging page", r.get(f"{base}task/"))
    page("preview: done", r.get(f"/lab/e/{prolific.slug}/preview/done/"))
    page("preview: withdrawn", r.get(f"{base}withdrawn/?n=1"))
    return pages


@pytest.fixture
def owner(experiment_factory, django_user_model):
    return django_user_model.objects.get(username="crowd-owner")


def test_no_participant_page_shows_english_in_a_german_study(experiment_factory, settings, owner):
    german = participant_pages(experiment_factory, "de", settings, owner)
    english = participant_pages(experiment_factory, "en", settings, owner)
    assert german.keys() == english.keys() and len(german) >= 30
    msgids = english_msgids()
    chunks = {c.strip() for m in msgids for c in re.split(r"%\(\w+\)[sd]|<[^>]+>|[←→]", m)}
    chunks = sorted(c for c in chunks if len(re.findall(r"[A-Za-z]", c)) >= 4)
    problems = []
    for name, html in german.items():
        text = visible(html)
        shown = "\n".join(text.segments)
        assert text.lang == "de", name
        problems += [f"{name}: English {c!r}" for c in chunks
                     if re.search(rf"(?<!\w){re.escape(c)}(?!\w)", shown)]
        same = set(text.segments) & set(visible(english[name]).segments)
        problems += [f"{name}: shown in both languages: {s!r}" for s in sorted(same)
                     if not SAME_EVERYWHERE.search(s)]
    assert not problems, "\n".join(problems)
    # what the researcher wrote stays as written, and English pages stay English
    assert "RESEARCHER-CONSENT" in german["consent, with what the device needs"]
    assert "Vorschau — es wird nichts gespeichert" in german["preview: judging page"]
    assert "I have read the above and agree to take part." in english["consent, with what the device needs"]
    assert all(visible(html).lang == "en" for html in english.values())
