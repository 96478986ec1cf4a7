"""Prolific: the participant arrives with ``PROLIFIC_PID``, ``STUDY_ID`` and ``SESSION_ID`` in the link and
is sent back to Prolific's completion URL with the study's one completion code."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from django.http import HttpRequest
from django.utils.translation import gettext

from webapp.crowd.platforms.base import Identity, Platform, _clip

if TYPE_CHECKING:
    from webapp.crowd.models import Assignment
    from webapp.experiments.models import Experiment


class Prolific(Platform):
    name = "prolific"
    label = "Prolific"
    link_params = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
    needs = "PROLIFIC_PID"
    driven_from_lab = True

    def identity(self, request: HttpRequest, exp: Experiment) -> Identity | None:
        src = request.POST if request.method == "POST" else request.GET
        pid = _clip(src.get("PROLIFIC_PID", ""))
        if not pid:
            return None
        return Identity(pid, study_id=src.get("STUDY_ID", "")[:200],
                        session_id=src.get("SESSION_ID", "")[:200])

    def completion_code(self, exp: Experiment) -> str:
        return exp.completion_code  # required (check_spec): Prolific matches one code for everyone

    def completion_redirect(self, a: Assignment) -> str | None:
        url = a.experiment.completion_url
        if not url:
            return None
        return f"{url}{'&' if '?' in url else '?'}{urlencode({'cc': a.completion_code})}"

    def return_instructions(self, exp: Experiment) -> str:
        return gettext("Please return your submission on Prolific (“Return submission” on the study's "
                       "page in your Prolific account), so that your place is freed for someone else. Do not "
                       "enter a completion code.")

    def check_spec(self, fields: Mapping[str, object]) -> str | None:
        if not str(fields.get("completion_code") or "").strip():
            return ("completion_code: required for a Prolific study (Prolific accepts one code for all "
                    "participants and cannot match a code made per person)")
        return None

    def simulated_link(self, run_id: str, index: int) -> dict[str, str]:
        return {"PROLIFIC_PID": f"SIM-{run_id}-{index:05d}", "STUDY_ID": f"SIM-{run_id}",
                "SESSION_ID": uuid.uuid4().hex}
