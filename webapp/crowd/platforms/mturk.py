"""Amazon MTurk: the HIT shows the study link (ExternalQuestion) inside a frame on MTurk's own site.

Inside that cross-site frame browsers block cookies (Safari always, Chrome with third-party cookies off), so
the flow needs none: the worker's ids travel from the link into a signed, time-limited consent form field
(instead of the CSRF cookie), the consent POST must come from this site's own page (Origin, else Referer),
and from then on the assignment token in the URL is the only authority, as for every assignment page. The
pages of an MTurk study may be framed by MTurk's worker sites only (CSP frame-ancestors). The completion
page posts the HIT back to ``turkSubmitTo/mturk/externalSubmit`` from inside the frame.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.signing import BadSignature, TimestampSigner
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext, gettext_lazy

from webapp.crowd.origin import from_own_page
from webapp.crowd.platforms.base import BadEntry, Identity, Platform, _clip

if TYPE_CHECKING:
    from webapp.crowd.models import Assignment
    from webapp.experiments.models import Experiment

PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"  # MTurk's assignmentId while a worker only previews the HIT
FORM_MAX_AGE_S = 7 * 24 * 3600  # a consent form stays valid as long as MTurk's longest assignment
_IDS = ("workerId", "assignmentId", "hitId", "turkSubmitTo")


def _signer(exp: Experiment) -> TimestampSigner:
    return TimestampSigner(salt=f"crowd.mturk-entry:{exp.slug}")


class MTurk(Platform):
    name = "mturk"
    label = "Amazon MTurk"
    link_params = _IDS
    needs = gettext_lazy("workerId, assignmentId or a valid turkSubmitTo")
    uses_cookies = False
    submission_is_assignment = True
    driven_from_lab = True

    def frame_ancestors(self) -> list[str]:
        return list(settings.CROWD_MTURK_FRAME_ANCESTORS)

    def is_preview(self, request: HttpRequest) -> bool:
        values = request.GET.getlist("assignmentId") + request.POST.getlist("assignmentId")
        return any(_clip(v) == PREVIEW for v in values)

    def refuse_form(self, request: HttpRequest, exp: Experiment) -> HttpResponse | None:
        if from_own_page(request):
            return None
        return render(request, "crowd/message.html", {
            "title": gettext("Consent form refused"),
            "text": gettext("This form was not sent from this study's own page.")}, status=403)

    def _link_ids(self, request: HttpRequest, exp: Experiment) -> dict[str, str]:
        """The worker's ids: from the link on GET, from the signed consent field on POST."""
        if request.method != "POST":
            return {k: request.GET.get(k, "") for k in _IDS}
        try:
            ids = _signer(exp).unsign_object(request.POST.get("entry", ""), max_age=FORM_MAX_AGE_S)
        except BadSignature:  # also an expired form
            raise BadEntry(gettext("This consent form is not valid or has expired. Please reload the HIT.")
                           ) from None
        return {k: str(ids.get(k, "")) for k in _IDS}

    def identity(self, request: HttpRequest, exp: Experiment) -> Identity | None:
        ids = self._link_ids(request, exp)
        worker, aid = _clip(ids["workerId"]), _clip(ids["assignmentId"])
        submit_to = ids["turkSubmitTo"].rstrip("/")
        if not worker or not aid or (submit_to and submit_to not in settings.CROWD_MTURK_SUBMIT_HOSTS):
            return None  # anything else in turkSubmitTo would make the completion form an open redirect
        kept = {"mturk_assignment_id": aid, "hit_id": ids["hitId"][:200],
                "turk_submit_to": ids["turkSubmitTo"][:500]}
        return Identity(worker, assignment_fields=kept)

    def consent_fields(self, request: HttpRequest, exp: Experiment) -> dict[str, str]:
        ids = {k: request.GET.get(k, "") for k in _IDS}
        return {"entry": _signer(exp).sign_object(ids)}

    def resumable(self, assignments: QuerySet[Assignment], ident: Identity) -> QuerySet[Assignment]:
        return assignments.filter(mturk_assignment_id=ident.assignment_fields["mturk_assignment_id"])

    def return_instructions(self, exp: Experiment) -> str:
        return gettext("Please return the HIT on MTurk (the “Return” button on MTurk's page around this "
                       "one), so that another worker can take it. Do not submit the HIT.")

    def submit_form(self, a: Assignment) -> tuple[str, dict[str, str]] | None:
        if not a.turk_submit_to:
            return None
        return (a.turk_submit_to.rstrip("/") + "/mturk/externalSubmit",
                {"assignmentId": a.mturk_assignment_id, "completion_code": a.completion_code})

    def simulated_link(self, run_id: str, index: int) -> dict[str, str]:
        return {"workerId": f"SIM-{run_id}-{index:05d}", "assignmentId": uuid.uuid4().hex,
                "hitId": f"SIM-{run_id}"}
