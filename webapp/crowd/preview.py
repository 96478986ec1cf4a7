"""A researcher's preview of a study, as its participants see it, whatever its status (drafts included).

``/lab/e/<slug>/preview/`` needs a researcher's login and a study they may see
(``experiments.access.experiment_for``; 404 otherwise): no participant token leads here and no preview
page leads to a participant's. It shows the consent page (with the viewing-conditions check: a device that
does not meet them sees the participant's refusal page, with a link to go on with the preview), then the
judging page (``task.js`` in preview mode) with the study's practice trials and a sample of its trials built
in memory like an assignment (``plan``; sentinels and repeats included), then the completion page. Nothing is
stored: no participant, assignment, item or judgment, no session change; answers stay in the page, and the
images come from ``/lab/e/<slug>/preview/<seed>/img/<position>/<side>``, which names a position in the
sample only (no codec, quality or stimulus). Every page carries the banner "Preview — nothing is stored".
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_http_methods

from webapp.crowd import platforms, views
from webapp.crowd.assign import plan_sequence
from webapp.crowd.models import Assignment, correct_side
from webapp.experiments.access import experiment_for
from webapp.experiments.models import Experiment, Trial
from webapp.experiments.spec import study_viewing

SEED_LIMIT = 2**31


@dataclass(frozen=True)
class PlanItem:
    """One item of a preview's sample: what an ``AssignmentItem`` holds, never stored."""

    position: int
    trial: Trial
    left_is_a: bool
    is_practice: bool


def plan(exp: Experiment, seed: int) -> list[PlanItem]:
    """The items a participant of ``exp`` could get, drawn with ``seed`` (the same seed, the same items, as
    long as the study's trials are unchanged): practice first, then ``trials_per_assignment`` normal trials
    with sentinels and repeats (sides swapped) at the study's rates, planned as an assignment is
    (``assign.plan_sequence``)."""
    trials = list(Trial.objects.filter(experiment=exp).order_by("id")
                  .select_related("stimulus_a", "stimulus_b", "reference"))
    by_kind: dict[str, list[Trial]] = {"normal": [], "sentinel": [], "practice": []}
    for t in trials:
        by_kind.setdefault(t.kind, []).append(t)
    rng = random.Random(seed)
    chosen = rng.sample(by_kind["normal"], min(exp.trials_per_assignment, len(by_kind["normal"])))
    sequence = plan_sequence(exp, chosen, by_kind["sentinel"], by_kind["practice"], rng)
    return [PlanItem(pos, trial, left_is_a, is_practice)
            for pos, (trial, _, is_practice, left_is_a) in enumerate(sequence)]


def _study(request: HttpRequest, slug: str) -> Experiment:
    """The study ``slug`` if the logged-in researcher may see it (any role), else 404."""
    return experiment_for(request.user, slug)


def _urls(slug: str) -> dict[str, str]:
    return {name: reverse(f"crowd:preview-{name}", kwargs={"slug": slug})
            for name in ("task", "done", "withdrawn")}


def _note_and_page(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    return render(request, template, {**context, "preview": True}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def entry(request: HttpRequest, slug: str) -> HttpResponse:
    """The consent page; its POST checks the viewing conditions as the participant's entry does, then goes
    to the judging page (or shows the decline or refusal page). Stores nothing."""
    exp = _study(request, slug)
    with views.in_language(exp):
        if request.method == "POST" and "decline" in request.POST:
            return _note_and_page(request, "crowd/left.html", views.declined_context(exp))
        if request.method == "POST":
            if request.POST.get("consent") != "yes":
                return _note_and_page(request, "crowd/message.html", {
                    "title": gettext("Consent required"),
                    "text": gettext("You can only take part after giving consent.")}, status=400)
            refused = views.refused_context(request, exp)
            if refused is None:
                return redirect("crowd:preview-task", slug=exp.slug)
            return _note_and_page(request, "crowd/left.html", {
                **refused, "again": reverse("crowd:preview", kwargs={"slug": exp.slug}),
                "note": gettext("Preview: a participant with this device stops here."),
                "go_on": _urls(exp.slug)["task"], "go_on_label": gettext("Go on with the preview anyway")},
                status=403)
        return _note_and_page(request, "crowd/consent.html", {**views.consent_context(exp), "csrf": True})


def _item_json(exp: Experiment, seed: int, item: PlanItem) -> dict:
    base = reverse("crowd:preview-image", kwargs={"slug": exp.slug, "seed": seed, "position": item.position,
                                                  "side": "left"})[: -len("left")]
    trial = item.trial
    out = {"position": item.position, "id": f"preview-{item.position}", "left": base + "left",
           "right": base + "right", "ref": base + "ref" if exp.mode == "triplet" else None,
           "practice": item.is_practice, "answered": None}
    if item.is_practice and trial.expected_id:
        out["correct"] = correct_side(trial, item.left_is_a)
    return out


@login_required
@require_GET
def task(request: HttpRequest, slug: str) -> HttpResponse:
    """The judging page with a new sample of the study's trials (``plan``); answers stay in the page."""
    exp = _study(request, slug)
    seed = random.randrange(SEED_LIMIT)
    rows = [_item_json(exp, seed, it) for it in plan(exp, seed)]
    with views.in_language(exp):
        if not rows:
            return _note_and_page(request, "crowd/message.html", {
                "title": gettext("No trials yet"),
                "text": gettext("This study has no trials to show yet (make its stimuli first).")},
                status=409)
        state = {"state": "active", "total": len(rows), "next": 0, "items": rows, "mode": exp.mode,
                 "question": exp.question, "min_response_ms": exp.min_response_ms,
                 "practice_count": sum(r["practice"] for r in rows), "viewing": study_viewing(exp)}
        return _note_and_page(request, "crowd/task.html", {
            "exp": exp, "state": state, "token": "preview", "urls": _urls(exp.slug),
            "catalog": views.catalog_url(exp)})


@login_required
@require_GET
def image(request: HttpRequest, slug: str, seed: int, position: int, side: str) -> FileResponse:
    """One image of the preview's sample, as participants get it (the uncompressed copy, the same headers)."""
    exp = _study(request, slug)
    items = plan(exp, seed) if seed < SEED_LIMIT else []
    if position >= len(items):
        raise Http404("no such image")
    item = items[position]
    return views.served_image(views.image_file(exp, item.trial, item.left_is_a, side), position)


@login_required
@require_GET
def done(request: HttpRequest, slug: str) -> HttpResponse:
    """The completion page as a participant sees it (a sample code where each participant gets their own)."""
    exp = _study(request, slug)
    platform = platforms.for_experiment(exp)
    unsaved = Assignment(experiment=exp, completion_code=platform.completion_code(exp))  # never saved
    with views.in_language(exp):
        info = {"code": unsaved.completion_code, "redirect": platform.completion_redirect(unsaved)}
        return _note_and_page(request, "crowd/done.html", {
            "exp": exp, "info": info, "platform": platform, "submit": platform.submit_form(unsaved),
            "note": gettext("Preview: participants are sent on to their platform from here; nothing was "
                            "stored.")})


@login_required
@require_GET
def withdrawn(request: HttpRequest, slug: str) -> HttpResponse:
    """The page a participant sees after withdrawing (``?n=``: how many answers the preview had)."""
    exp = _study(request, slug)
    try:
        answers = min(max(int(request.GET.get("n", "0")), 0), 10000)
    except ValueError:
        answers = 0
    with views.in_language(exp):
        return _note_and_page(request, "crowd/left.html", {
            **views.withdrawn_context(exp, answers),
            "note": gettext("Preview: nothing was stored, so nothing was erased.")})
