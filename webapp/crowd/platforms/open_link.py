"""The open link: anyone with the study URL; the participant's id is made here and kept in the session."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.signing import BadSignature, Signer
from django.http import HttpRequest
from django.utils.crypto import get_random_string
from django.utils.translation import gettext

from webapp.crowd.platforms.base import BadEntry, Identity, Platform

if TYPE_CHECKING:
    from webapp.experiments.models import Experiment


def _session_key(exp: Experiment) -> str:
    return f"crowd_pid_{exp.slug}"


def _signer(exp: Experiment) -> Signer:
    return Signer(salt=f"crowd.entry:{exp.slug}")


class OpenLink(Platform):
    name = "open"
    label = "open link"

    def identity(self, request: HttpRequest, exp: Experiment) -> Identity | None:
        """The id this session consented with; else, on the consent POST, the one its form was issued with
        (a double submit or a retry of that form is the same participant), or a new one. Before consent the
        session holds none, so a session id planted then carries nothing; the form's id is only in the page
        the participant was sent. BadEntry if it was tampered with. None (no identity yet) on a first GET."""
        bound = request.session.get(_session_key(exp))
        if bound or request.method != "POST":
            return Identity(bound or "")
        issued = request.POST.get("entry")
        if issued is None:
            return Identity(get_random_string(24))
        try:
            return Identity(_signer(exp).unsign(issued))
        except BadSignature:
            raise BadEntry(gettext("This consent form is not valid. Please open the study link again.")
                           ) from None

    def consent_fields(self, request: HttpRequest, exp: Experiment) -> dict[str, str]:
        return {"entry": _signer(exp).sign(get_random_string(24))}  # the identity this form will start

    def consented(self, request: HttpRequest, exp: Experiment, ident: Identity) -> None:
        request.session[_session_key(exp)] = ident.platform_id

    def forget(self, request: HttpRequest, exp: Experiment, platform_id: str) -> None:
        if request.session.get(_session_key(exp)) == platform_id:  # only the id of who withdrew
            request.session.pop(_session_key(exp))
