"""The study's Recruiting page (``/lab/e/<slug>/recruit/``): the platform's records and decisions, and
forms to create the HIT or study, review submissions, approve, reject or ask to return them, and pay
bonuses. The study's owners only (superusers too), the page as well as its actions: they spend money and
decide on workers, and the page lists the workers' platform ids (403 for viewers and editors, 404 for a
user with no role on the study). The platform is asked only when the researcher asks (``?review=1``
fetches its submissions), never on a plain visit."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from webapp.experiments.access import experiment_for
from webapp.lab.views import LOGIN_URL
from webapp.recruit import remotes
from webapp.recruit.remotes import RemoteError

ACTIONS = ("create", "approve-proposed", "reject-proposed", "decide", "bonus")


def _remote(request: HttpRequest, slug: str):
    exp = experiment_for(request.user, slug, "owner")
    remote = remotes.for_experiment(exp)
    if remote is None:
        raise Http404("this study's platform has nothing to drive from the lab")
    return exp, remote


def _live(params, remote: remotes.Remote) -> bool:
    return remote.has_sandbox and params.get("live") == "1"


def _here(exp, live: bool, review: bool = False) -> str:
    query = "&".join(q for q, on in (("live=1", live), ("review=1", review)) if on)
    return reverse("recruit:page", args=[exp.slug]) + (f"?{query}" if query else "")


@login_required(login_url=LOGIN_URL)
@require_GET
def page(request: HttpRequest, slug: str) -> HttpResponse:
    exp, remote = _remote(request, slug)
    live = _live(request.GET, remote)
    context = {"exp": exp, "remote": remote, "live": live, "records": list(remote.records(exp)[:20]),
               "decisions": list(remote.decisions(exp)[:50]), "overview": None, "proposals": None,
               "reviewing": request.GET.get("review") == "1"}
    if context["reviewing"]:
        try:
            conn = remote.connect(live)
            context["overview"] = remote.overview(exp, conn)
            context["proposals"] = remote.review(exp, conn)
        except RemoteError as exc:
            messages.error(request, str(exc))
    return render(request, "recruit/page.html", context)


@login_required(login_url=LOGIN_URL)
@require_POST
def act(request: HttpRequest, slug: str, action: str) -> HttpResponse:
    """One action on the platform; its lines (or the platform's one-line refusal) are shown on the page."""
    exp, remote = _remote(request, slug)
    if action not in ACTIONS:
        raise Http404("no such action")
    live = _live(request.POST, remote)
    post = request.POST
    try:
        conn = remote.connect(live)
        if action == "create":
            lines = remote.create(exp, conn, {f.name: post.get(f.name, "") for f in remote.create_fields},
                                  request.user)
        elif action in ("approve-proposed", "reject-proposed"):
            lines = remote.decide_proposed(exp, conn, action.split("-")[0], request.user)
        elif action == "decide":
            verdict, ids = post.get("verdict", ""), post.getlist("submission")
            if verdict not in remote.verdicts or not ids:
                messages.error(request, "Choose submissions and one of: " + ", ".join(remote.verdicts))
                return redirect(_here(exp, live, review=True))
            lines = remote.decide(exp, conn, verdict, ids, post.get("reason", "").strip(), request.user)
        else:
            lines = remote.bonus(exp, conn, post.get("submission", "").strip(), post.get("amount", ""),
                                 post.get("reason", ""), request.user)
    except RemoteError as exc:
        messages.error(request, str(exc))
    else:
        for line in lines:
            messages.info(request, line)
    return redirect(_here(exp, live, review=action != "create"))
