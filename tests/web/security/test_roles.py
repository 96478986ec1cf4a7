"""Shared studies: every researcher URL (dashboard pages, plots, thumbnails, exports, Recruiting page and its
actions, erasure, status, sampling, members) and every API endpoint against every kind of user: anonymous,
a stranger (no role), viewer, editor, owner (a member with the owner role) and superuser.

The expected answer follows from the role the URL needs (README, "Shared studies"): anonymous → the login
page (dashboard) or 401 (API); no role → 404, the study's existence never shown; a lower role → 403; enough
→ the view's own answer. A refused request changes no row of any table; an allowed write changes some.
The URL list is checked against the URLconf, so a new researcher view without a row here fails the suite.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.contrib.messages import get_messages
from django.core.files.base import ContentFile
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.web.lab.lab_factories import build_world
from tests.web.security.hostile import changed_tables, db_fingerprint

KINDS = ("anonymous", "stranger", "viewer", "editor", "owner", "superuser")
RANK = {"viewer": 0, "editor": 1, "owner": 2}
ROLE_OF = {"viewer": "viewer", "editor": "editor", "owner": "owner", "superuser": "owner"}


@dataclass
class Study:
    exp: object
    users: dict
    participant: object
    opaque: str
    job: object


@pytest.fixture
def study(db, media_root, django_user_model):
    """A paused Prolific study (so it has a Recruiting page) of ``record`` (its owner field), shared with a
    viewer, an editor and an owner; one participant with a judgment, a finished export, a saliency map."""
    from learning.saliency import save_map
    from webapp.experiments import access
    from webapp.lab.export import opaque_id
    from webapp.lab.models import ExportJob

    mk = django_user_model.objects.create_user
    users = {name: mk(name, password=f"pw-{name}", is_staff=True)
             for name in ("record", "stranger", "viewer", "editor", "owner", "newcomer")}
    users["superuser"] = django_user_model.objects.create_superuser("root", "root@example.org", "pw-root")
    w = build_world(users["record"])
    exp = w.exp
    exp.platform, exp.completion_code, exp.status = "prolific", "C0DE", "paused"
    exp.save(update_fields=["platform", "completion_code", "status"])
    for role in ("viewer", "editor", "owner"):
        access.set_role(exp, users[role], role, by=users["record"])
    p = w.participant("p1")
    w.judge(p, w.normal[0], "a")
    buf = io.BytesIO()
    save_map(__import__("numpy").linspace(0, 1, 32 * 32).reshape(32, 32), buf)
    w.refs[0].saliency.save("map.png", ContentFile(buf.getvalue()))
    w.refs[0].saliency_model = "spectral"
    w.refs[0].save(update_fields=["saliency_model"])
    job = ExportJob.objects.create(experiment=exp, state="done", file="exports/done.zip")
    (media_root / "exports").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(media_root / "exports" / "done.zip", "w") as z:
        z.writestr("manifest.json", "{}")
    return Study(exp, users, p, opaque_id("participant", str(p.pk)), job)


@dataclass
class Case:
    """One request to a researcher URL: ``name`` (the URLconf's), ``need`` (the role that may send it),
    ``ok`` (the answers when allowed), ``writes`` (an allowed request changes rows), ``check`` (more to
    assert on an allowed answer)."""

    name: str
    method: str
    path: Callable[[Study], str]
    need: str
    ok: set[int]
    data: Callable[[Study], dict] = lambda s: {}
    writes: bool = False
    api: bool = False
    check: Callable | None = None
    label: str = ""
    args: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.label or f"{self.method} {self.name}"


def _lab(name: str, *extra) -> Callable[[Study], str]:
    return lambda s: reverse(name, args=[s.exp.slug, *[e(s) if callable(e) else e for e in extra]])


def _platform_was_asked(response) -> None:
    """An allowed Recruiting action reached the platform: with no PROLIFIC_TOKEN it says so, sends nothing."""
    said = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "PROLIFIC_TOKEN is not set" in said, said


def _zip(response) -> None:
    assert zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist() == ["manifest.json"]


def _png(response) -> None:
    assert response["Content-Type"] == "image/png"


SLUG_CASES = [
    Case("lab:experiment", "get", _lab("lab:experiment"), "viewer", {200}),
    Case("lab:plot", "get", _lab("lab:plot", "qc", "png"), "viewer", {200}, check=_png),
    Case("lab:plot", "get", _lab("lab:plot", "scale", "svg"), "viewer", {200}, label="GET lab:plot svg"),
    Case("lab:reference", "get", _lab("lab:reference", 0), "viewer", {200}, check=_png),
    Case("lab:saliency", "get", _lab("lab:saliency", 0), "viewer", {200}, check=_png),
    Case("lab:export", "get", _lab("lab:export"), "viewer", {302}),
    Case("lab:export-download", "get", _lab("lab:export-download", lambda s: s.job.pk), "viewer", {200},
         check=_zip),
    Case("lab:status", "post", _lab("lab:status"), "editor", {302}, lambda s: {"status": "closed"},
         writes=True),
    Case("lab:status", "post", _lab("lab:status"), "owner", {302}, lambda s: {"status": "live"}, writes=True,
         label="POST lab:status live (publishes on Prolific: owner)"),
    Case("lab:sampling", "post", _lab("lab:sampling"), "editor", {302}, lambda s: {"sampling": "active"},
         writes=True),
    Case("lab:export", "post", _lab("lab:export"), "editor", {302}, writes=True),
    Case("lab:erase-participant", "get", _lab("lab:erase-participant", lambda s: s.participant.pk), "owner",
         {200}),
    Case("lab:erase-participant", "post", _lab("lab:erase-participant", lambda s: s.participant.pk), "owner",
         {302}, lambda s: {"reason": "asked"}, writes=True),
    Case("lab:members", "post", _lab("lab:members"), "owner", {302},
         lambda s: {"username": "newcomer", "role": "editor"}, writes=True),
    Case("lab:members", "post", _lab("lab:members"), "owner", {302},
         lambda s: {"username": "viewer", "role": "owner"}, writes=True, label="POST lab:members promote"),
    Case("lab:member-remove", "post", _lab("lab:member-remove"), "owner", {302},
         lambda s: {"username": "editor"}, writes=True),
    Case("recruit:page", "get", _lab("recruit:page"), "owner", {200}),
    Case("recruit:page", "get", lambda s: reverse("recruit:page", args=[s.exp.slug]) + "?review=1", "owner",
         {200}, check=_platform_was_asked, label="GET recruit:page ?review=1"),
    *[Case("recruit:act", "post", _lab("recruit:act", action), "owner", {302}, data,
           check=_platform_was_asked, label=f"POST recruit:act {action}")
      for action, data in (("create", lambda s: {"reward_cents": "100", "minutes": "5"}),
                           ("approve-proposed", lambda s: {}), ("reject-proposed", lambda s: {}),
                           ("decide", lambda s: {"verdict": "approve", "submission": "S1"}),
                           ("bonus", lambda s: {"submission": "S1", "amount": "1.00", "reason": "thanks"}))],
    # the study as its participants see it (webapp/crowd/preview.py): it stores nothing, a read
    Case("crowd:preview", "get", _lab("crowd:preview"), "viewer", {200}),
    Case("crowd:preview", "post", _lab("crowd:preview"), "viewer", {302}, lambda s: {"consent": "yes"},
         label="POST crowd:preview consent"),
    Case("crowd:preview-task", "get", _lab("crowd:preview-task"), "viewer", {200}),
    Case("crowd:preview-image", "get", _lab("crowd:preview-image", 1, 0, "left"), "viewer", {200}),
    Case("crowd:preview-done", "get", _lab("crowd:preview-done"), "viewer", {200}),
    Case("crowd:preview-withdrawn", "get", _lab("crowd:preview-withdrawn"), "viewer", {200}),
    # API
    Case("lab:api-experiment", "get", _lab("lab:api-experiment"), "viewer", {200}, api=True),
    Case("lab:api-judgments", "get", _lab("lab:api-judgments"), "viewer", {200}, api=True),
    Case("lab:api-qc", "get", _lab("lab:api-qc"), "viewer", {200}, api=True),
    Case("lab:api-export", "get", _lab("lab:api-export"), "viewer", {200}, api=True),
    Case("lab:api-export", "get",
         lambda s: reverse("lab:api-export", args=[s.exp.slug]) + f"?job={s.job.pk}&zip=1", "viewer",
         {200}, api=True, check=_zip, label="GET lab:api-export zip"),
    Case("lab:api-export", "post", _lab("lab:api-export"), "editor", {202}, api=True, writes=True),
    Case("lab:api-participant", "delete", _lab("lab:api-participant", lambda s: s.opaque), "owner", {200},
         lambda s: {"reason": "asked"}, api=True, writes=True),
    Case("lab:api-erase-by-platform-id", "post", _lab("lab:api-erase-by-platform-id"), "owner", {200},
         lambda s: {"platform_id": "PID-p1"}, api=True, writes=True),
]

# Researcher URLs that name no study, with what they answer instead (tested below).
NO_STUDY = {
    "lab:front": "public front page",
    "lab:login": "the login form",
    "lab:logout": "logs the caller out",
    "lab:index": "lists the studies the caller holds a role on",
    "lab:api-experiments": "lists the studies the caller holds a role on",
    "lab:api-schema": "the API's OpenAPI schema, no study data",
}
PARTICIPANT_NAMESPACES = {"crowd", "admin"}  # worker pages (their own tests) and Django's admin


def _all_url_names() -> dict[str, str]:
    """{namespace:name: route} for every named URL of the project but Django's admin and the participant
    pages; a URL under ``lab/`` or ``api/`` is a researcher's whichever app serves it (the preview)."""
    out = {}

    def walk(patterns, ns: str, prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, p.namespace or ns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and p.name:
                route = prefix + str(p.pattern)
                if ns not in PARTICIPANT_NAMESPACES or route.startswith(("lab/", "api/")):
                    out[f"{ns}:{p.name}" if ns else p.name] = route

    walk(get_resolver().url_patterns, "", "")
    return out


def test_every_researcher_url_is_in_the_matrix():
    """A researcher URL added without a row here fails: each study URL has at least one case, and the
    URLs that name no study are listed with what they do."""
    names = _all_url_names()
    covered = {c.name for c in SLUG_CASES}
    assert set(names) == covered | set(NO_STUDY), (
        f"not in the role matrix: {sorted(set(names) - covered - set(NO_STUDY))}; "
        f"gone from the URLconf: {sorted((covered | set(NO_STUDY)) - set(names))}")
    for name in NO_STUDY:
        assert "<slug" not in names[name], f"{name} names a study: it needs rows in SLUG_CASES"
    for name in covered:
        assert "<slug:slug>" in names[name], name


def _client(s: Study, kind: str, api: bool):
    c = (APIClient if api else Client)(raise_request_exception=False)
    if kind == "anonymous":
        return c
    user = s.users[kind]
    if api:
        c.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    else:
        c.force_login(user)
    return c


def _allowed(case: Case, kind: str) -> bool:
    return kind in ROLE_OF and RANK[ROLE_OF[kind]] >= RANK[case.need]


def _expected(case: Case, kind: str) -> set[int]:
    if kind == "anonymous":
        return {401} if case.api else {302}
    if kind == "stranger":
        return {404}
    return case.ok if _allowed(case, kind) else {403}


def _send(c, case: Case, s: Study):
    send, data = getattr(c, case.method), case.data(s)
    return send(case.path(s), data, format="json") if case.api else send(case.path(s), data)


@pytest.mark.parametrize("kind", KINDS)
def test_role_matrix(study, kind, monkeypatch):
    """Every case for one kind of user: the expected answer; refused → no row changed, allowed write → rows
    changed. Each request runs in a savepoint rolled back afterwards, so every case sees the same study."""
    monkeypatch.delenv("PROLIFIC_TOKEN", raising=False)  # an allowed Recruiting action must not reach out
    s, failures = study, []
    clients = {api: _client(s, kind, api) for api in (False, True)}  # logging in writes last_login
    for case in SLUG_CASES:
        want = _expected(case, kind)
        before = db_fingerprint()
        with transaction.atomic():
            r = _send(clients[case.api], case, s)
            after = db_fingerprint()
            transaction.set_rollback(True)
        changed = changed_tables(before, after)
        body = b"" if getattr(r, "streaming", False) else r.content
        refused = not _allowed(case, kind)
        if r.status_code not in want:
            failures.append(f"{case}: {r.status_code}, want {sorted(want)}: {body[:150]!r}")
            continue
        if refused:
            if changed:
                failures.append(f"{case}: refused ({r.status_code}) but changed {changed}")
            if kind == "anonymous" and not case.api:
                assert "/login/" in r["Location"], case
            if r.status_code != 403:  # nothing about the study for those with no role
                assert s.exp.title.encode() not in body, case
        else:
            if case.writes and not changed:
                failures.append(f"{case}: allowed but changed nothing")
            if not case.writes and changed:
                failures.append(f"{case}: a read changed {changed}")
            if case.check:
                case.check(r)
    assert not failures, f"{kind}:\n" + "\n".join(failures)


def test_refused_writes_touch_no_row_even_with_the_next_role_down(study):
    """The writes most worth guarding, spelled out: an editor cannot erase, pay or manage members, a viewer
    cannot change status, sampling or export; the study stays as it was (checked on the rows themselves)."""
    from webapp.crowd.models import Participant
    from webapp.experiments.models import Membership
    from webapp.lab.models import ExportJob
    from webapp.recruit.models import Decision, PlatformStudy

    s = study
    viewer, editor = _client(s, "viewer", False), _client(s, "editor", False)
    slug, pk = s.exp.slug, s.participant.pk
    assert viewer.post(reverse("lab:status", args=[slug]), {"status": "closed"}).status_code == 403
    assert viewer.post(reverse("lab:sampling", args=[slug]), {"sampling": "active"}).status_code == 403
    assert viewer.post(reverse("lab:export", args=[slug])).status_code == 403
    assert editor.post(reverse("lab:erase-participant", args=[slug, pk])).status_code == 403
    assert editor.post(reverse("lab:status", args=[slug]), {"status": "live"}).status_code == 403
    assert editor.post(reverse("recruit:act", args=[slug, "create"]), {"reward_cents": "1"}
                       ).status_code == 403
    assert editor.post(reverse("lab:members", args=[slug]), {"username": "editor", "role": "owner"}
                       ).status_code == 403
    api = _client(s, "editor", True)
    assert api.delete(reverse("lab:api-participant", args=[slug, s.opaque])).status_code == 403
    assert api.post(reverse("lab:api-erase-by-platform-id", args=[slug]), {"platform_id": "PID-p1"},
                    format="json").status_code == 403
    assert _client(s, "viewer", True).post(reverse("lab:api-export", args=[slug])).status_code == 403
    s.exp.refresh_from_db()
    assert (s.exp.status, s.exp.spec.get("sampling")) == ("paused", None)
    assert Participant.objects.filter(pk=pk).exists()
    assert ExportJob.objects.filter(experiment=s.exp).count() == 1
    assert Membership.objects.get(experiment=s.exp, user=s.users["editor"]).role == "editor"
    assert not PlatformStudy.objects.exists() and not Decision.objects.exists()


def test_lists_show_the_studies_a_user_holds_a_role_on(study):
    """``lab/`` and ``api/experiments/``: a stranger sees no study; each member sees it with their role."""
    s = study
    other = build_world(s.users["stranger"], slug="strangers")
    for kind in ("stranger", "viewer", "editor", "owner", "superuser", "record"):
        page = _client(s, kind, False).get(reverse("lab:index"))
        listed = _client(s, kind, True).get(reverse("lab:api-experiments")).json()
        roles = {e["slug"]: e["role"] for e in listed}
        mine = {"stranger": {"strangers": "owner"}, "superuser": {"exp1": "owner", "strangers": "owner"},
                "record": {"exp1": "owner"}}.get(kind, {"exp1": kind})
        assert roles == mine, kind
        assert page.status_code == 200 and (s.exp.title.encode() in page.content) == ("exp1" in mine), kind
    viewer = _client(s, "viewer", True)
    assert viewer.get(reverse("lab:api-experiment", args=["exp1"])).json()["role"] == "viewer"
    assert viewer.get(reverse("lab:api-experiment", args=[other.exp.slug])).status_code == 404
    anon = APIClient()
    assert anon.get(reverse("lab:api-experiments")).status_code == 401
    assert Client().get(reverse("lab:index")).status_code == 302


def test_study_page_offers_each_role_only_what_it_may_do(study):
    """The study page shows a control only to a role that may use it (the views refuse the rest anyway)."""
    s = study
    controls = {"status": b'id="status-form"', "export": b'id="export-form"',
                "sampling": b'id="sampling-form"',
                "erase": reverse("lab:erase-participant", args=[s.exp.slug, s.participant.pk]).encode(),
                "recruiting": b'id="recruiting"', "members": b'id="member-add"'}
    offered = {"viewer": set(), "editor": {"status", "export", "sampling"}}
    for kind in ("viewer", "editor", "owner", "superuser"):
        page = _client(s, kind, False).get(reverse("lab:experiment", args=[s.exp.slug]))
        assert page.status_code == 200
        shown = {name for name, marker in controls.items() if marker in page.content}
        assert shown == offered.get(kind, set(controls)), kind
        assert f"Your role: <strong>{ROLE_OF[kind]}</strong>".encode() in page.content
        live = b'<button type="submit" name="status" value="live" disabled>'
        assert (live in page.content) == (kind == "editor"), kind  # a Prolific study: only owners set it live
        for name in ("record", "viewer", "editor", "owner"):
            assert f"<td>{name}</td>".encode() in page.content  # everyone sees who shares the study


def test_editor_sets_an_open_link_study_live(study):
    """Going live spends money only on a paid platform: on an open link the editor may do it."""
    s = study
    s.exp.platform = "open"
    s.exp.save(update_fields=["platform"])
    r = _client(s, "editor", False).post(reverse("lab:status", args=[s.exp.slug]), {"status": "live"})
    assert r.status_code == 302
    s.exp.refresh_from_db()
    assert s.exp.status == "live"
