"""Worker pages and the participant JSON API.

Participants are identified only by the opaque assignment token in ``/a/<token>/``. Images are served per
item and side (``/a/<token>/img/<position>/<left|right|ref>``), so neither URLs nor JSON reveal the codec,
the quality, or which image is the original. The JSON POSTs are CSRF-exempt, since they
carry no cookie-borne authority: they are authorised by the unguessable assignment token in the URL (never
by the session, which they do not read), and a browser's cross-site request is refused by two checks of
their own. An ``Origin`` header, which browsers send with every POST, must name this site (or one of
``CSRF_TRUSTED_ORIGINS``), and the header ``X-Assignment-Token`` must equal the URL token: a cross-site
page cannot set a custom header without a CORS preflight (none is allowed), and cannot know the token.
The consent form is checked by the study's platform (``platforms/``): Django's CSRF check where the
platform's pages get cookies; for MTurk, whose HIT frame is cross-site and gets none, a signed form field
and the Origin. Every page answers with its platform's framing rule (``framed``): DENY, or MTurk's sites.
A participant may decline on the consent page (nothing is stored) or withdraw from the judging page
(``withdraw``: everything stored of them in the study is erased, ``erasure.py``). A study's viewing
conditions are checked on the consent POST (``viewing.py``): a participant who does not meet them is
refused before anything is stored. Every participant page is shown in the study's language (its file's
``language:``, never the browser's), ``task.js`` through the JavaScript catalog (``js_catalog``).
"""

from __future__ import annotations

import functools
import json
import uuid
from datetime import UTC, datetime
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.signing import BadSignature, Signer
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext, ngettext
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.i18n import JavaScriptCatalog

from webapp.crowd import platforms, viewing
from webapp.crowd.assign import create_assignment, expire, locked_for_entry
from webapp.crowd.erasure import NotErasable, erase_participant
from webapp.crowd.judging import ValidJudgment, insert_new, stored_answer, token_db_value, validate_judgment
from webapp.crowd.models import Assignment, AssignmentItem, Erasure, Participant, correct_side, shown_sides
from webapp.crowd.origin import foreign_origin
from webapp.crowd.platforms import BadEntry, Identity, Platform
from webapp.crowd.ratelimit import over_limit
from webapp.experiments.models import Experiment
from webapp.experiments.spec import study_language, study_viewing
from webapp.stimuli.served import served_path

IMAGE_CACHE_CONTROL = "private, max-age=86400, no-transform"


def framed(response: HttpResponse, platform: Platform) -> HttpResponse:
    """``response`` with the platform's framing rule: the origins it names may frame the page (CSP
    frame-ancestors, which supersedes X-Frame-Options); a platform that names none keeps DENY."""
    ancestors = platform.frame_ancestors()
    if ancestors:
        response.xframe_options_exempt = True
        response["Content-Security-Policy"] = "frame-ancestors " + " ".join(ancestors)
    return response


def _page(request: HttpRequest, exp: Experiment, template: str, context: dict, status: int = 200
          ) -> HttpResponse:
    """A participant page of study ``exp``, framed as its platform allows."""
    return framed(render(request, template, context, status=status), platforms.for_experiment(exp))


def _message(request: HttpRequest, exp: Experiment | None, title: str, text: str, status: int
             ) -> HttpResponse:
    resp = render(request, "crowd/message.html", {"title": title, "text": text}, status=status)
    return framed(resp, platforms.for_experiment(exp)) if exp is not None else resp


def _go(exp: Experiment, to: str, token: uuid.UUID) -> HttpResponse:
    """A redirect to the assignment's page ``to`` (task or done), framed as the study's platform allows."""
    return framed(redirect(to, token=token), platforms.for_experiment(exp))


def in_language(exp: Experiment) -> translation.override:
    """The study's language for its participant pages (a context manager): its file's, not the browser's."""
    return translation.override(study_language(exp))


def _not_live_text(status: str) -> str:
    return {
        "draft": gettext("This study has not started yet."),
        "paused": gettext("This study is paused. Please try again later."),
        "closed": gettext("This study is closed and no longer accepts participants."),
    }.get(status, gettext("This study is not available."))


def _not_live(request: HttpRequest, exp: Experiment) -> HttpResponse:
    return _message(request, exp, gettext("Study not available"), _not_live_text(exp.status), 403)


def _bind_session(request: HttpRequest, exp: Experiment, token: uuid.UUID, rotated: bool = False) -> None:
    """Tie this browser's session to the assignment ``token``, under a new session key whenever it was
    tied to another one (or none): a session id planted before never leads to this assignment. Not for a
    platform without cookies, whose session would only be a row nobody reads."""
    if not platforms.for_experiment(exp).uses_cookies:
        return
    key = f"crowd_token_{exp.slug}"
    if not rotated and request.session.get(key) != str(token):
        request.session.cycle_key()
    request.session[key] = str(token)


def _page_of(a: Assignment) -> str:
    """The assignment's own page: its completion page once completed, else the judging page."""
    return "crowd:done" if a.state == "completed" else "crowd:task"


def _resume(request: HttpRequest, exp: Experiment, found: Assignment) -> HttpResponse:
    """Send a returning participant to their assignment (or its completion page)."""
    _bind_session(request, exp, found.token)
    return _go(exp, _page_of(found), found.token)


def _existing(exp: Experiment, ident: Identity, pid: int | None = None) -> Assignment | None:
    """The participant's (``pid``, else looked up from ``ident``) current assignment (resume) or last
    completed one, if any."""
    # two lookups by unique/foreign-key indexes rather than one join: the join's plan went quadratic on a
    # freshly launched study (statistics of near-empty tables), 30 ms per entry at 300 participants
    if pid is None and not ident.platform_id:  # an open link before consent
        return None
    if pid is None:
        same = {"experiment": exp, "platform": exp.platform, "platform_id": ident.platform_id}
        pid = Participant.objects.filter(**same).values_list("pk", flat=True).first()
    if pid is None:
        return None
    mine = Assignment.objects.filter(participant_id=pid, experiment=exp)
    qs = platforms.for_experiment(exp).resumable(mine, ident)
    qs = qs.exclude(state="expired").order_by("-created")
    for a in qs[:1]:
        if Assignment.is_overdue(a.state, a.expires_at, timezone.now()):
            expire(a.experiment_id, [a.pk])
            return None
        return a
    return None


# CSRF-exempt: the study's platform checks the consent form itself (platforms/base.py: Django's CSRF check
# for the platforms with cookies; a signed form field and the Origin for MTurk's cookie-less frame).
@csrf_exempt
@require_http_methods(["GET", "POST"])
def entry(request: HttpRequest, slug: str) -> HttpResponse:
    """``/p/<slug>/``: platform entry; GET shows consent (or a preview), POST consents and starts."""
    if over_limit(request, "entry"):
        # in the study's language when there is one (a lookup by its unique slug, on this path only)
        exp = Experiment.objects.filter(slug=slug).only("spec").first()
        with translation.override(study_language(exp) if exp else None):
            return _message(request, None, gettext("Too many requests"),
                            gettext("Please wait a minute and try again."), 429)
    if request.method == "POST" and "decline" in request.POST:  # before consent: it stores nothing
        exp = get_object_or_404(Experiment, slug=slug)
        with in_language(exp):
            return _declined(request, exp)
    if request.method == "POST" and request.POST.get("consent") == "yes":
        # Consent starts an identity (from here on, the open link's id lives in the session): never under a
        # key someone else may have planted in this browser before, since they could then follow it to the
        # assignment. A browser without a stored session gets a new key anyway when the session is saved.
        request.session.keys()  # loads it: a key that is not stored is dropped here
        if request.session.session_key is not None:
            request.session.cycle_key()
        # One transaction from the study's row lock on (assign.py), which is also where the study is read:
        # an arrival at a live study costs as few statements as it can (tests/web/crowd/test_entry_cost.py).
        with transaction.atomic():
            exp = get_object_or_404(locked_for_entry(), slug=slug)
            with in_language(exp):
                return _entry(request, exp)
    exp = get_object_or_404(Experiment, slug=slug)
    with in_language(exp):
        return _entry(request, exp)


def declined_context(exp: Experiment) -> dict:
    """What the page after "I do not want to take part" shows (also the researcher's preview of it)."""
    return {"title": gettext("You chose not to take part"), "page_id": "declined",
            "lines": [gettext("Thank you for considering this study. Nothing about you has been stored.")],
            "instructions": platforms.for_experiment(exp).return_instructions(exp)}


def _declined(request: HttpRequest, exp: Experiment) -> HttpResponse:
    """The page after "I do not want to take part": nothing stored, no session or cookie touched."""
    return _page(request, exp, "crowd/left.html", declined_context(exp))


def refused_context(request: HttpRequest, exp: Experiment) -> dict | None:
    """The refusal page's context when the consent POST's measurements (``viewing`` field) and User-Agent
    do not meet the study's viewing conditions; None when they do or the study sets none."""
    conditions = study_viewing(exp)
    if conditions is None:
        return None
    facts = viewing.parse_facts(request.POST.get(viewing.FIELD))
    reasons = viewing.refusals(conditions, facts, request.headers.get("User-Agent", ""))
    if not reasons:
        return None
    return {"title": gettext("Your device cannot be used for this study"), "page_id": "refused",
            "lines": [gettext("This study shows images that must be seen at their exact size, so it needs "
                              "a suitable screen. Nothing about you has been stored.")],
            "reasons": reasons, "again": request.get_full_path(),
            "instructions": platforms.for_experiment(exp).return_instructions(exp)}


def consent_context(exp: Experiment) -> dict:
    """What the consent page shows besides the form: the study and what its viewing conditions need."""
    conditions = study_viewing(exp)
    return {"exp": exp, "requirements": viewing.requirements(conditions), "measure": conditions is not None,
            "viewing_field": viewing.FIELD}


def _entry(request: HttpRequest, exp: Experiment) -> HttpResponse:
    """``entry`` for the study ``exp`` (locked by a consent POST's transaction)."""
    platform = platforms.for_experiment(exp)
    if exp.status != "live":
        return _not_live(request, exp)
    if platform.is_preview(request):
        if request.method == "POST":  # consent cannot be given to a HIT that is not accepted yet
            return _message(request, exp, gettext("Preview only"), gettext(
                "This HIT is only being previewed. Accept the HIT on Mechanical Turk first, then give your "
                "consent."), 400)
        return _page(request, exp, "crowd/preview.html", consent_context(exp))
    if request.method == "POST":
        refused = platform.refuse_form(request, exp)
        if refused is not None:
            return framed(refused, platform)
    src = request.POST if request.method == "POST" else request.GET
    if any("\x00" in v for _, values in src.lists() for v in values):  # no database column can hold NUL
        return _message(request, exp, gettext("Invalid study link"),
                        gettext("The link contains a character that is not allowed."), 400)
    try:
        ident = platform.identity(request, exp)
    except BadEntry as exc:
        return _message(request, exp, gettext("Invalid consent form"), str(exc), 400)
    if ident is None:
        return _message(request, exp, gettext("Missing study link parameters"), gettext(
            "This link must be opened from %(platform)s (%(needs)s missing).") % {
            "platform": platform.label, "needs": platform.needs}, 400)
    if request.method == "GET" or request.POST.get("consent") != "yes":
        found = _existing(exp, ident)
        if found is not None:
            return _resume(request, exp, found)
    if request.method == "GET":
        return _page(request, exp, "crowd/consent.html", {
            **consent_context(exp), "hidden": platform.consent_fields(request, exp),
            "csrf": platform.uses_cookies})
    if request.POST.get("consent") != "yes":
        return _message(request, exp, gettext("Consent required"),
                        gettext("You can only take part after giving consent."), 400)
    refused = refused_context(request, exp)
    if refused is not None:  # nothing is stored: no participant, no assignment, no session
        return _page(request, exp, "crowd/left.html", refused, status=403)
    platform.consented(request, exp, ident)
    # One entry at a time per participant: a double submit, or a client retrying a consent POST that is
    # still queued, must find the assignment the first one made rather than take a second one. A new
    # participant's row is locked by its INSERT until this transaction ends (a concurrent INSERT of the
    # same identity waits, then finds it); a known one is locked here.
    participant, new = _consenting_participant(exp, ident)
    found = None if new else _existing(exp, ident, participant.pk)
    if found is not None:
        _bind_session(request, exp, found.token, rotated=True)
        return _go(exp, _page_of(found), found.token)
    try:
        assignment = create_assignment(exp.pk, participant, locked=exp, **ident.assignment_fields)
    except LookupError:  # nothing left for this participant: the transaction is rolled back, nothing stored
        return _message(request, exp, gettext("No more trials"),
                        gettext("There are no more trials for you in this study. Thanks!"), 410)
    _bind_session(request, exp, assignment.token, rotated=True)
    return _go(exp, "crowd:task", assignment.token)


@functools.cache
def _insert_participant_sql() -> str:
    return (f"INSERT INTO {Participant._meta.db_table} (experiment_id, platform, platform_id, study_id, "
            "session_id, consent_at, created) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (experiment_id, platform, platform_id) DO NOTHING RETURNING id")


def _consenting_participant(exp: Experiment, ident: Identity) -> tuple[Participant, bool]:
    """The participant ``ident`` names, with consent recorded and its row locked until the transaction ends;
    (participant, True) when this call created it. Inside a transaction."""
    now = timezone.now()
    fields = {"experiment": exp, "platform": exp.platform, "platform_id": ident.platform_id[:200],
              "study_id": ident.study_id, "session_id": ident.session_id, "consent_at": now, "created": now}
    ops = connection.ops
    with connection.cursor() as cur:  # one statement: INSERT ... ON CONFLICT DO NOTHING RETURNING id
        cur.execute(_insert_participant_sql(), [
            exp.pk, fields["platform"], fields["platform_id"], fields["study_id"], fields["session_id"],
            ops.adapt_datetimefield_value(now), ops.adapt_datetimefield_value(now)])
        row = cur.fetchone()
    if row is not None:
        return Participant(pk=row[0], **fields), True
    participant = Participant.objects.select_for_update().get(
        experiment=exp, platform=exp.platform, platform_id=fields["platform_id"])
    if participant.consent_at is None:
        participant.consent_at = now
        participant.save(update_fields=["consent_at"])
    return participant, False


def _assignment(token: uuid.UUID) -> Assignment:
    try:
        return Assignment.objects.select_related("experiment", "participant").get(token=token)
    except Assignment.DoesNotExist as exc:
        raise Http404("unknown assignment") from exc


def _closed_reason_for(
    pk: int, experiment_id: int, state: str, expires_at: datetime, study_status: str
) -> str | None:
    """Why the assignment ``pk`` cannot take judgments now (None = it can: ``Assignment.closed_reason``);
    marks it expired if overdue."""
    now = timezone.now()
    reason = Assignment.closed_reason(state, expires_at, study_status, now)
    if study_status == "live" and Assignment.is_overdue(state, expires_at, now):
        expire(experiment_id, [pk])
    return reason


def _closed_reason(a: Assignment) -> str | None:
    """Why this assignment cannot take judgments now (None = it can)."""
    reason = _closed_reason_for(a.pk, a.experiment_id, a.state, a.expires_at, a.experiment.status)
    if reason == "this assignment is expired":
        a.state = "expired"
    return reason


@require_GET
def task(request: HttpRequest, token: uuid.UUID) -> HttpResponse:
    """The judging page (instructions, practice, trials), with the assignment's state in it (what
    ``state`` answers), so that the page shows the first trial without another request; all work
    happens in crowd/task.js."""
    a, state_json = _state(token)
    if a.state == "completed":
        return _go(a.experiment, "crowd:done", a.token)
    with in_language(a.experiment):
        reason = _closed_reason(a)
        if reason:
            return _message(request, a.experiment, gettext("Assignment not available"),
                            _closed_text(a.experiment, reason), 403)
        return _page(request, a.experiment, "crowd/task.html", {
            "exp": a.experiment, "state": state_json, "preview": False, "token": a.token,
            "urls": _task_urls(a.token), "catalog": catalog_url(a.experiment)})


def _closed_text(exp: Experiment, reason: str) -> str:
    """What the judging page of a closed assignment says (``reason``: ``_closed_reason``'s)."""
    if exp.status != "live":
        return _not_live_text(exp.status)
    if reason.endswith("expired"):
        return gettext("Sorry, the time for this assignment has run out.")
    return gettext("Sorry, this assignment is closed.")


def _task_urls(token: uuid.UUID) -> dict[str, str]:
    kw = {"token": token}
    return {name: reverse(f"crowd:{name}", kwargs=kw)
            for name in ("state", "judge", "complete", "device", "withdraw")}


def catalog_url(exp: Experiment) -> str:
    """The JavaScript catalog of the study's language (what ``task.js`` translates with)."""
    return reverse("crowd:jsi18n", kwargs={"lang": study_language(exp)})


class _Catalog(JavaScriptCatalog):
    packages = ["webapp.crowd"]


@require_GET
def js_catalog(request: HttpRequest, lang: str) -> HttpResponse:
    """``/i18n/<lang>.js``: the translations ``task.js`` uses (``gettext()``), in the language named by the
    URL (the study's, as the page links it); 404 for a language the site does not ship."""
    if lang not in dict(settings.LANGUAGES):
        raise Http404("no such language")
    with translation.override(lang):
        resp = _Catalog.as_view()(request)
    resp["Cache-Control"] = "public, max-age=3600"
    return resp


def _image_prefix(a: Assignment) -> str:
    """``/a/<token>/img/``: item image URLs are this + ``<position>/<side>`` (one reverse() per request)."""
    url = reverse("crowd:image", kwargs={"token": a.token, "position": 0, "side": "left"})
    return url[: -len("0/left")]


def _item_json(a: Assignment, item: AssignmentItem, prefix: str) -> dict:
    base = f"{prefix}{item.position}/"
    out = {
        "position": item.position,
        "id": f"{a.token.hex[:8]}-{item.position}",
        "left": base + "left",
        "right": base + "right",
        "ref": base + "ref" if a.experiment.mode == "triplet" else None,
        "practice": item.is_practice,
        "answered": item.answered,
    }
    if item.is_practice and item.trial.expected_id:  # feedback only for practice, never for sentinels
        out["correct"] = correct_side(item.trial, item.left_is_a)
    return out


def _state(token: uuid.UUID) -> tuple[Assignment, dict]:
    """(the assignment, its state as ``state`` answers it), in one query: the items with their
    assignment, study, trial and judged side; 404 for an unknown token."""
    items = list(AssignmentItem.objects.filter(assignment__token=token)
                 .select_related("assignment__experiment", "trial")
                 .annotate(answered=F("judgment__chosen_side")).order_by("position"))
    a = items[0].assignment if items else _assignment(token)  # every assignment has items
    prefix = _image_prefix(a)
    rows = [_item_json(a, it, prefix) for it in items]
    nxt = next((r["position"] for r in rows if r["answered"] is None), None)
    exp = a.experiment
    return a, {
        "state": a.state,
        "total": len(rows),
        "next": nxt,
        "items": rows,
        "mode": exp.mode,
        "question": exp.question,
        "min_response_ms": exp.min_response_ms,
        "practice_count": sum(r["practice"] for r in rows),
        "viewing": study_viewing(exp),
    }


@require_GET
def state(request: HttpRequest, token: uuid.UUID) -> JsonResponse:
    """Items, which are answered, and the next unanswered position."""
    return JsonResponse(_state(token)[1])


@require_GET
def image(request: HttpRequest, token: uuid.UUID, position: int, side: str) -> FileResponse:
    """The PNG for one side of one item (or its reference), by opaque per-assignment position, as its
    uncompressed copy (``stimuli/served.py``)."""
    # One query: the item at this position of the token's assignment, with its study and trial; not the
    # stimuli's encoded bitstreams (the page gets the decoded copies). Unknown token or position: 404.
    items = AssignmentItem.objects.select_related(
        "assignment__experiment", "trial__stimulus_a", "trial__stimulus_b", "trial__reference",
    ).defer("trial__stimulus_a__encoded", "trial__stimulus_b__encoded")
    item = get_object_or_404(items, assignment__token=token, position=position)
    return served_image(image_file(item.assignment.experiment, item.trial, item.left_is_a, side), position)


def image_file(exp: Experiment, trial, left_is_a: bool, side: str):
    """The stored file shown on ``side`` (left, right, or ref in triplet mode) of an item; Http404 else."""
    if side in ("left", "right"):
        return shown_sides(trial, left_is_a)[side == "right"].decoded
    if side == "ref" and exp.mode == "triplet":
        return trial.reference.file
    raise Http404("no such image")


def served_image(f, position: int) -> HttpResponse:
    """The uncompressed copy of the stored image ``f`` (``stimuli/served.py``) as the image at
    ``position``: its length tells nothing about codec or quality, and every image of a trial gets the
    same headers: a neutral file name (the copy's is a per-stimulus hash), no ETag or Last-Modified, and
    no-transform so that no proxy compresses it back into a telling size."""
    path = served_path(f)
    if settings.SERVED_X_ACCEL_REDIRECT:  # nginx sends the file (its internal location drops ETag and dates)
        resp = HttpResponse(content_type="image/png")
        resp["X-Accel-Redirect"] = settings.SERVED_X_ACCEL_REDIRECT + path.name
        resp["Content-Disposition"] = f'inline; filename="{position}.png"'
    else:
        resp = FileResponse(path.open("rb"), content_type="image/png", filename=f"{position}.png")
    resp["Cache-Control"] = IMAGE_CACHE_CONTROL
    return resp


def _json_body(request: HttpRequest, token: uuid.UUID) -> tuple[dict | None, JsonResponse | None]:
    """Check the request's origin and token header, parse a small JSON object body; return (data, None) or
    (None, error response)."""
    if foreign_origin(request):
        return None, JsonResponse({"error": "cross-origin request refused"}, status=403)
    if request.headers.get("X-Assignment-Token", "") != str(token):
        return None, JsonResponse({"error": "missing or wrong X-Assignment-Token header"}, status=403)
    if request.content_type != "application/json":
        return None, JsonResponse({"error": "Content-Type must be application/json"}, status=415)
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0:  # request.body would raise on it
        return None, JsonResponse({"error": "invalid Content-Length header"}, status=400)
    if length > settings.CROWD_MAX_BODY_BYTES:
        return None, JsonResponse({"error": "request body too large"}, status=413)
    try:
        body = request.body
    except RequestDataTooBig:
        return None, JsonResponse({"error": "request body too large"}, status=413)
    if len(body) > settings.CROWD_MAX_BODY_BYTES:
        return None, JsonResponse({"error": "request body too large"}, status=413)
    try:
        data = json.loads(body.decode("utf-8") or "null")
    except (ValueError, RecursionError) as exc:  # ValueError covers decode errors; deep nesting recurses
        return None, JsonResponse({"error": f"malformed JSON: {exc}"}, status=400)
    if not isinstance(data, dict):
        return None, JsonResponse({"error": "expected a JSON object"}, status=400)
    return data, None


def _json(body: bytes, status: int) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="application/json")


def _replay(token: uuid.UUID, v: ValidJudgment) -> HttpResponse | None:
    """Answer a replayed uuid or an already-judged position from what is stored (None if neither)."""
    with connection.cursor() as cur:
        answer = stored_answer(cur, connection, token, v)
    return None if answer is None else _json(answer[1], answer[0])


@functools.cache
def _judge_lookup_sql() -> str:
    """Why a judgment was not stored, in one indexed lookup: the assignment by token (unique), its study's
    status, and the id of the item at the posted position (unique (assignment, position); NULL if none)."""
    return (
        "SELECT a.id, a.experiment_id, a.state, a.expires_at, e.status, i.id "
        f"FROM {Assignment._meta.db_table} a "
        f"JOIN {Experiment._meta.db_table} e ON e.id = a.experiment_id "
        f"LEFT JOIN {AssignmentItem._meta.db_table} i ON i.assignment_id = a.id AND i.position = %s "
        "WHERE a.token = %s"
    )


# CSRF-exempt: authorised by the assignment token in the URL, not by a cookie; a cross-site page is refused
# by the Origin and X-Assignment-Token checks of _json_body (module docstring).
@csrf_exempt
@require_POST
def judge(request: HttpRequest, token: uuid.UUID) -> HttpResponse:
    """Store one judgment: 201 new, 200 replay, 409 uuid reused, 400 bad input, 403 closed, 413 too big.

    A new judgment to an open assignment is one statement (``judging.insert_new``: INSERT ... SELECT with
    the checks in its WHERE, ON CONFLICT DO NOTHING on the uuid and the slot, the answer from its
    RETURNING); only when it stores nothing does the view look up why (``_judge_lookup_sql`` and
    ``_replay``) to give the precise answer from what is stored. Neither reads the session nor scans a
    table.
    """
    data, err = _json_body(request, token)
    v, msg = (None, None) if err else validate_judgment(data)
    row = None
    if v is not None:
        with connection.cursor() as cur:
            try:
                created = insert_new(cur, connection, token, v, timezone.now())
            except IntegrityError:  # a foreign key gone mid-statement: the participant withdrew (erasure.py)
                created = None
            if created:
                return _json(created, 201)
            cur.execute(_judge_lookup_sql(), [v.position, token_db_value(token, connection)])
            row = cur.fetchone()
    if row is None:  # an unknown token is 404 before any complaint about the request
        _assignment(token)
        if err:
            return err
        return JsonResponse({"error": msg}, status=400)
    a_id, exp_id, state, expires_at, study_status, item_id = row
    if isinstance(expires_at, str):  # SQLite can hand raw-cursor timestamps back as text
        expires_at = parse_datetime(expires_at)
    if timezone.is_naive(expires_at):  # ... and naive (UTC, as stored with USE_TZ)
        expires_at = timezone.make_aware(expires_at, UTC)
    reason = _closed_reason_for(a_id, exp_id, state, expires_at, study_status)
    if reason:
        return JsonResponse({"error": reason}, status=403)
    replay = _replay(token, v)
    if replay:
        return replay
    if item_id is None:
        return JsonResponse({"error": f"no item at position {v.position}"}, status=400)
    # Open, the item exists and nothing is stored under this uuid or position: the assignment or study
    # changed between the two statements (it was reopened, say). Try the insert once more.
    with connection.cursor() as cur:
        created = insert_new(cur, connection, token, v, timezone.now())
    if created:
        return _json(created, 201)
    return JsonResponse({"error": "the judgment could not be stored now; send it again"}, status=503)


def _size(v: object) -> list | None:
    """``v`` if it is [width, height] of non-negative numbers below a million, else None."""
    ok = isinstance(v, list) and len(v) == 2
    ok = ok and all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x < 1e6 for x in v)
    return v if ok else None


def _device_facts(request: HttpRequest, data: dict) -> tuple[dict | None, str | None]:
    """(facts to store, None) from a device payload and the User-Agent, else (None, what is wrong)."""
    dpr = data.get("dpr")
    if not isinstance(dpr, (int, float)) or isinstance(dpr, bool) or not 0 < dpr < 100:
        return None, "dpr: expected a positive number"
    return {
        "viewport": _size(data.get("viewport")),
        "dpr": dpr,
        "user_agent": request.headers.get("User-Agent", "").replace("\x00", "")[:500],  # jsonb refuses NUL
        "screen": _size(data.get("screen")),
    }, None


@csrf_exempt  # as judge: the token authorises, _json_body refuses cross-site pages
@require_POST
def device(request: HttpRequest, token: uuid.UUID) -> JsonResponse:
    """Record device facts (viewport, devicePixelRatio, user agent) sent by the page on start.

    The judge's rules: 404 unknown token, then the request's own errors, then 403 when the assignment is
    not open (completed, expired) or the study not live. The UPDATE itself carries those conditions, so a
    study paused or an assignment closed in between is never written to; only when it changes nothing
    does the view look up why.
    """
    data, err = _json_body(request, token)
    facts, msg = (None, None) if err else _device_facts(request, data)
    if err or msg:
        _assignment(token)  # an unknown token is 404 before any complaint about the request
        return err or JsonResponse({"error": msg}, status=400)
    open_now = Assignment.objects.filter(Assignment.open_q(timezone.now()), token=token)
    if open_now.update(device=facts):
        return JsonResponse({"status": "ok"})
    reason = _closed_reason(_assignment(token))  # it is closed, or the study is not live
    if reason:
        return JsonResponse({"error": reason}, status=403)
    return JsonResponse({"error": "the device facts could not be stored now; send them again"}, status=503)


def _completion(a: Assignment) -> dict:
    out = {"code": a.completion_code, "done_url": reverse("crowd:done", kwargs={"token": a.token})}
    go = platforms.for_experiment(a.experiment).completion_redirect(a)
    if go:
        out["redirect"] = go
    return out


@csrf_exempt  # as judge: the token authorises, the Origin and token header checks refuse cross-site pages
@require_POST
def complete(request: HttpRequest, token: uuid.UUID) -> JsonResponse:
    """Finish the assignment once every item is judged; returns the completion code (and redirect)."""
    a = _assignment(token)
    if foreign_origin(request):
        return JsonResponse({"error": "cross-origin request refused"}, status=403)
    if request.headers.get("X-Assignment-Token", "") != str(token):
        return JsonResponse({"error": "missing or wrong X-Assignment-Token header"}, status=403)
    if a.state == "completed":
        return JsonResponse(_completion(a))
    reason = _closed_reason(a)
    if reason:
        return JsonResponse({"error": reason}, status=403)
    missing = a.items.filter(judgment__isnull=True).count()
    if missing:
        return JsonResponse({"error": f"{missing} items are not judged yet"}, status=409)
    with transaction.atomic():
        locked = Assignment.objects.select_for_update().get(pk=a.pk)
        if locked.state == "active":
            locked.state = "completed"
            locked.completed_at = timezone.now()
            locked.completion_code = platforms.for_experiment(a.experiment).completion_code(a.experiment)
            locked.save(update_fields=["state", "completed_at", "completion_code"])
    locked.experiment = a.experiment
    return JsonResponse(_completion(locked))


@require_GET
def done(request: HttpRequest, token: uuid.UUID) -> HttpResponse:
    """Completion page: the code, and what the platform does next (a redirect, or a form back to it)."""
    a = _assignment(token)
    if a.state != "completed":
        return _go(a.experiment, "crowd:task", a.token)
    platform = platforms.for_experiment(a.experiment)
    with in_language(a.experiment):
        return _page(request, a.experiment, "crowd/done.html", {
            "exp": a.experiment, "info": _completion(a), "platform": platform,
            "submit": platform.submit_form(a)})


def _withdrawn_signer(exp: Experiment) -> Signer:
    return Signer(salt=f"crowd.withdrawn:{exp.slug}")


def _unbind_session(request: HttpRequest, exp: Experiment, token: uuid.UUID, platform_id: str) -> None:
    """Drop what this browser's session keeps of a participant who withdrew (the platforms with cookies)."""
    platform = platforms.for_experiment(exp)
    if not platform.uses_cookies:
        return
    key = f"crowd_token_{exp.slug}"
    if request.session.get(key) == str(token):
        request.session.pop(key)
    platform.forget(request, exp, platform_id)


@csrf_exempt  # as judge: the token authorises, _json_body refuses cross-site pages
@require_POST
def withdraw(request: HttpRequest, token: uuid.UUID) -> JsonResponse:
    """``{"confirm": true}``: the participant withdraws. Their assignments end and everything stored of
    them in this study (judgments, assignments, ids) is erased (``erasure.erase_participant``); an
    ``Erasure`` record without anything personal is kept. Any state of the assignment or study.

    200 ``{status, judgments_erased, page}`` (``page``: the withdrawal page, with the platform's return
    instructions); 404 for an unknown token, which a replay is (nothing is kept to recognise it); then
    the judge's 400/403/413/415 for the request itself. Authorised like every assignment POST, by the
    token in the URL, the ``X-Assignment-Token`` header and the Origin, never by the session (which is
    only cleaned up where the platform uses one)."""
    data, err = _json_body(request, token)
    a = Assignment.objects.select_related("experiment", "participant").filter(token=token).first()
    gone = JsonResponse({"error": "no such assignment: it was withdrawn already, or never existed"},
                        status=404)
    if a is None:
        return gone
    if err:
        return err
    if data.get("confirm") is not True:
        return JsonResponse({"error": 'expected {"confirm": true}'}, status=400)
    exp = a.experiment
    try:
        record = erase_participant(a.participant_id, exp, kind=Erasure.WITHDRAWAL, via="participant")
    except NotErasable:  # the same withdrawal, sent twice at once, was done by the other request
        return gone
    _unbind_session(request, exp, token, a.participant.platform_id)
    page = reverse("crowd:withdrawn", kwargs={"slug": exp.slug})
    page += "?" + urlencode({"r": _withdrawn_signer(exp).sign(str(record.pk))})
    return JsonResponse({"status": "withdrawn", "judgments_erased": record.judgments, "page": page})


@require_GET
def withdrawn(request: HttpRequest, slug: str) -> HttpResponse:
    """The page after a withdrawal (``?r=``: the signed id of its record, which names nobody): what was
    erased, and what the platform asks of the participant now."""
    exp = get_object_or_404(Experiment, slug=slug)
    with in_language(exp):
        try:
            pk = int(_withdrawn_signer(exp).unsign(request.GET.get("r", "")))
        except (BadSignature, ValueError):
            pk = None
        records = Erasure.objects.filter(pk=pk, experiment=exp, kind=Erasure.WITHDRAWAL)
        record = records.first() if pk else None
        if record is None:
            return _message(request, exp, gettext("Page not available"), gettext("This link is not valid."),
                            404)
        return _page(request, exp, "crowd/left.html", withdrawn_context(exp, record.judgments))


def withdrawn_context(exp: Experiment, answers: int) -> dict:
    """What the page after a withdrawal of ``answers`` answers shows (also the researcher's preview of it)."""
    line = ngettext(
        "Your participation in “%(title)s” has ended. Your %(count)d answer and the ids that linked it to "
        "you have been erased from our database.",
        "Your participation in “%(title)s” has ended. Your %(count)d answers and the ids that linked them "
        "to you have been erased from our database.", answers) % {"title": exp.title, "count": answers}
    return {"title": gettext("You have withdrawn from the study"), "page_id": "withdrawn", "lines": [line],
            "instructions": platforms.for_experiment(exp).return_instructions(exp)}
