"""Researcher dashboard: experiment list, experiment page, plots, status change, zip export, members.

Every study view asks ``access.experiment_for`` with the role it needs (README, "Shared studies")."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth import get_user_model, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from learning.scaling.plan import plan as scaling_plan
from webapp.crowd import platforms
from webapp.crowd.erasure import NotErasable
from webapp.crowd.erasure import erase_participant as erase
from webapp.crowd.models import Erasure, Participant
from webapp.experiments import access
from webapp.experiments.access import at_least, experiment_for, experiments_for
from webapp.experiments.models import Experiment
from webapp.experiments.sampling import SAMPLING, sampling_mode, set_sampling_mode
from webapp.experiments.signals import status_changing
from webapp.lab import analysis, plots
from webapp.lab.jobs import start_export, zip_response
from webapp.lab.models import ExportJob
from webapp.lab.params import BIGINT_MAX, parse_flag
from webapp.lab.simulated_participants import SIMULATED
from webapp.lab.summary import get_summary, refreshing

LOGIN_URL = reverse_lazy("lab:login")
STATUSES = ("draft", "live", "paused", "closed")
PLOT_TITLES = {
    "timeline": "Judgments over time",
    "coverage": "Coverage per trial",
    "qc": "QC per participant",
    "winrate": "Win rate per codec and bitrate",
    "scale": "Quality scale (JOD, 95 % posterior interval)",
    "agreement": "Agreement (judges, metrics)",
}


class LoginView(auth_views.LoginView):
    template_name = "lab/login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self):
        return str(reverse_lazy("lab:index"))


def logout_view(request):
    if request.method == "POST":
        logout(request)
    return redirect("lab:login")


@require_GET
def front(request):
    """``/``: what the site is, the researcher login, and a word for a participant without a study link.
    No study is listed."""
    return render(request, "lab/front.html")


@login_required(login_url=LOGIN_URL)
@require_GET
def index(request):
    rows = [(exp, analysis.progress(exp)) for exp in experiments_for(request.user)]
    return render(request, "lab/index.html", {"rows": rows})


QC_PAGE_SIZE = 200  # QC rows per table page: thousands of rows made the page slow and unreadable


def qc_page(request, participants: list, param: str):
    """One page of QC rows (``?PARAM=N``, Django's Paginator; flagged participants first, then by id)."""
    ordered = sorted(participants, key=lambda p: (not p.flagged, p.participant_id))
    return Paginator(ordered, QC_PAGE_SIZE).get_page(request.GET.get(param))


@login_required(login_url=LOGIN_URL)
@require_GET
def experiment_detail(request, slug: str):
    """The study page: its figures from the study's ``Summary`` (computed once for the page and its plots,
    see ``summary.get_summary``), the plan for ``?ci_width=`` JOD, exports, references and controls."""
    exp = experiment_for(request.user, slug, "viewer")
    try:
        ci_width = float(request.GET.get("ci_width", "0.5"))
        if not 0 < ci_width < 100:
            raise ValueError
    except ValueError:
        return HttpResponseBadRequest("ci_width: a number of JOD between 0 and 100\n",
                                      content_type="text/plain")
    summary = get_summary(exp)
    scale = summary.scale
    plan, plan_error = None, scale["error"]
    if scale["scale"] is not None:
        plan = scaling_plan(scale["scale"], ci_width)
    qc = [p for p in summary.qc if p.platform != SIMULATED]
    simulated = [p for p in summary.qc if p.platform == SIMULATED]
    context = {
        "exp": exp,
        "summary": summary,
        "refreshing": summary.stale and refreshing(exp),
        "progress": summary.progress,
        "qc": qc,
        "qc_page": qc_page(request, qc, "qc_page"),
        "qc_flagged": sum(p.flagged for p in qc),
        "simulated": simulated,
        "simulated_page": qc_page(request, simulated, "sim_page"),
        "simulated_flagged": sum(p.flagged for p in simulated),
        "simulated_judgments": sum(p.judgments for p in simulated),
        "rules": summary.rules,
        "win_rates": summary.win_rates,
        "scale": scale["rows"],
        "scale_error": scale["error"],
        "plan": plan,
        "plan_error": plan_error,
        "ci_width": ci_width,
        "sampling": sampling_mode(exp),
        "sampling_modes": SAMPLING,
        "agreement": summary.agreement,
        "metrics": summary.metrics,
        "plots": PLOT_TITLES.items(),
        "statuses": STATUSES,
        "references": list(exp.references.order_by("id")),
        "exports": list(exp.export_jobs.all()[:5]),
        "recruits_remotely": platforms.for_experiment(exp).driven_from_lab,
        "erasures": list(exp.erasures.select_related("by").order_by("-id")[:50]),
        "role": exp.user_role,
        "may_edit": at_least(exp.user_role, "editor"),
        "may_own": at_least(exp.user_role, "owner"),
        "may_set_live": at_least(exp.user_role,
                                 access.status_need("live", platforms.for_experiment(exp).driven_from_lab)),
        "members": access.members(exp),
        "roles": access.ROLES,
    }
    context["exports_running"] = any(j.state in ("queued", "running") for j in context["exports"])
    return render(request, "lab/experiment.html", context)


@login_required(login_url=LOGIN_URL)
@require_GET
def plot(request, slug: str, name: str, fmt: str):
    """One of the study page's figures, drawn from the same ``Summary`` as the page."""
    if name not in plots.PLOTS or fmt not in plots.FORMATS:
        raise Http404("no such plot")
    exp = experiment_for(request.user, slug, "viewer")
    resp = HttpResponse(plots.render(name, get_summary(exp), fmt), content_type=plots.FORMATS[fmt])
    if fmt == "svg" or request.GET.get("download"):
        resp["Content-Disposition"] = f'attachment; filename="{exp.slug}-{name}.{fmt}"'
    resp["Cache-Control"] = "no-store"
    return resp


def _reference(request, slug: str, index: int):
    """The experiment's ``index``-th reference (by id), if ``request.user`` may see the experiment."""
    exp = experiment_for(request.user, slug, "viewer")
    if index >= exp.references.count():  # also keeps an index past bigint out of the OFFSET
        raise Http404("no such reference")
    return exp.references.order_by("id")[index]


@login_required(login_url=LOGIN_URL)
@require_GET
def reference(request, slug: str, index: int):
    """Thumbnail of the experiment's ``index``-th reference (by id)."""
    # here, not at the top: it imports torch, which the web workers load only for this page
    from webapp.stimuli.saliency import thumbnail

    resp = HttpResponse(thumbnail(_reference(request, slug, index)), content_type="image/png")
    resp["Cache-Control"] = "private, max-age=300"
    return resp


@login_required(login_url=LOGIN_URL)
@require_GET
def saliency(request, slug: str, index: int):
    """Overlay thumbnail of the experiment's ``index``-th reference (by id) and its saliency map."""
    # here, not at the top: it imports torch, which the web workers load only for this page
    from webapp.stimuli.saliency import overlay_thumbnail

    ref = _reference(request, slug, index)
    if not ref.saliency:
        raise Http404("no saliency map for this reference")
    resp = HttpResponse(overlay_thumbnail(ref), content_type="image/png")
    resp["Cache-Control"] = "private, max-age=300"
    return resp


@login_required(login_url=LOGIN_URL)
@require_POST
def set_status(request, slug: str):
    """POST ``status=draft|live|paused|closed`` (editor; setting live a study on a paid platform: owner)."""
    exp = experiment_for(request.user, slug, "editor")
    status = request.POST.get("status", "")
    if status not in STATUSES:
        return HttpResponseBadRequest(f"status must be one of {', '.join(STATUSES)}")
    access.require(exp, access.status_need(status, platforms.for_experiment(exp).driven_from_lab))
    if status != exp.status:
        answers = status_changing.send_robust(Experiment, experiment=exp, status=status)
        vetoes = [str(r) for _, r in answers if isinstance(r, Exception)]
        if vetoes:
            for text in vetoes:
                messages.error(request, f"Status not changed: {text}")
            return redirect("lab:experiment", slug=exp.slug)
        exp.status = status
        exp.save(update_fields=["status"])
        for _, said in answers:
            if isinstance(said, str) and said:
                messages.info(request, said)
    return redirect("lab:experiment", slug=exp.slug)


@login_required(login_url=LOGIN_URL)
@require_POST
def set_sampling(request, slug: str):
    """POST ``sampling=balanced|active`` (editor): how the next participants' trials are chosen."""
    exp = experiment_for(request.user, slug, "editor")
    try:
        set_sampling_mode(exp, request.POST.get("sampling", ""))
    except ValueError as exc:
        return HttpResponseBadRequest(f"{exc}\n", content_type="text/plain")
    return redirect("lab:experiment", slug=exp.slug)


@login_required(login_url=LOGIN_URL)
@require_http_methods(["GET", "POST"])
def erase_participant(request, slug: str, pk: int):
    """GET: what erasing participant ``pk`` (the ``#`` of the QC table) of the study deletes, and the form
    that confirms it, with a reason; POST: erase (``webapp.crowd.erasure``), then back to the study page.
    Owner only, both (403 for a lower role); 404 for a study the researcher has no role on or a participant
    it does not have (nothing changes)."""
    exp = experiment_for(request.user, slug, "owner")
    if pk > BIGINT_MAX:
        raise Http404("no such participant")
    p = get_object_or_404(Participant, pk=pk, experiment=exp)
    if request.method == "POST":
        reason = request.POST.get("reason", "").replace("\x00", "")[:2000]
        try:
            record = erase(p.pk, exp, kind=Erasure.ERASURE, via="dashboard", by=request.user, reason=reason)
        except NotErasable:  # erased in between
            raise Http404("no such participant") from None
        messages.success(request, f"Participant #{pk} erased: {record.judgments} judgment(s) and "
                                  f"{record.assignments} assignment(s) deleted (erasure record {record.pk}).")
        return redirect(reverse("lab:experiment", args=[exp.slug]) + "#erasures")
    return render(request, "lab/erase.html", {
        "exp": exp, "p": p, "judgments": p.assignments.aggregate(n=Count("judgments"))["n"],
        "assignments": p.assignments.count()})


def export_flags(params) -> dict[str, bool]:
    """``exclude_flagged`` and ``include_simulated`` from a query or form; ValueError names a bad one."""
    flags = {}
    for name in ("exclude_flagged", "include_simulated"):
        try:
            flags[name] = parse_flag(params.get(name))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return flags


@login_required(login_url=LOGIN_URL)
@require_http_methods(["GET", "POST"])
def export(request, slug: str):
    """POST (editor): start a background export (``jobs.build_export``); its progress and zip are on the
    study's page, where a GET (viewer) is sent."""
    exp = experiment_for(request.user, slug, "viewer")
    if request.method == "GET":
        return redirect(reverse("lab:experiment", args=[exp.slug]) + "#exports")
    access.require(exp, "editor")
    try:
        flags = export_flags(request.POST)
    except ValueError as exc:
        return HttpResponseBadRequest(f"{exc}\n", content_type="text/plain")
    start_export(exp, request.user, **flags)
    return redirect(reverse("lab:experiment", args=[exp.slug]) + "#exports")


@login_required(login_url=LOGIN_URL)
@require_GET
def export_download(request, slug: str, job: uuid.UUID):
    """The zip of a finished export of this study (viewer)."""
    exp = experiment_for(request.user, slug, "viewer")
    try:
        found = ExportJob.objects.select_related("experiment").get(pk=job, experiment=exp)
    except ExportJob.DoesNotExist:
        raise Http404("no such export") from None
    return zip_response(found)


def _member_redirect(exp) -> HttpResponse:
    return redirect(reverse("lab:experiment", args=[exp.slug]) + "#members")


@login_required(login_url=LOGIN_URL)
@require_POST
def set_member(request, slug: str):
    """POST ``username`` and ``role=viewer|editor|owner`` (owner): give that user the role on the study, or
    change theirs; a refusal (unknown user or role, the owner of record, the last owner) is shown on the
    study page and changes nothing."""
    exp = experiment_for(request.user, slug, "owner")
    username = request.POST.get("username", "").strip().replace("\x00", "")[:150]
    user = get_user_model().objects.filter(username=username).first() if username else None
    if user is None:
        messages.error(request, f"Members not changed: no user named {username!r}")
        return _member_redirect(exp)
    try:
        access.set_role(exp, user, request.POST.get("role", ""), by=request.user)
    except access.MembershipError as exc:
        messages.error(request, f"Members not changed: {exc}")
    else:
        messages.success(request, f"{user.get_username()} is now {request.POST['role']} of this study.")
    return _member_redirect(exp)


@login_required(login_url=LOGIN_URL)
@require_POST
def remove_member(request, slug: str):
    """POST ``username`` (owner): take that user's role on the study away (not the owner of record's, nor
    the last owner's)."""
    exp = experiment_for(request.user, slug, "owner")
    username = request.POST.get("username", "").strip().replace("\x00", "")[:150]
    user = get_user_model().objects.filter(username=username).first() if username else None
    try:
        removed = user is not None and access.remove_member(exp, user)
    except access.MembershipError as exc:
        messages.error(request, f"Members not changed: {exc}")
    else:
        if removed:
            messages.success(request, f"{username} no longer has a role on this study.")
        else:
            messages.error(request, f"Members not changed: {username!r} is not a member of this study")
    return _member_redirect(exp)
