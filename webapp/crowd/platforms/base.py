"""What every recruiting platform decides: who the participant is at entry, whether the visit is a preview,
how the consent form is protected, whether the pages may be framed, how the study is left at the end, and
what a participant who declines or withdraws is asked to do on the platform.

A platform is one subclass of ``Platform`` in its own module, registered in ``platforms/__init__.py``.
The views call these methods and never test a platform's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.crypto import get_random_string

if TYPE_CHECKING:  # type hints only: the models import this package's registry for their choices
    from django.db.models import QuerySet

    from webapp.crowd.models import Assignment
    from webapp.experiments.models import Experiment


class BadEntry(ValueError):
    """A consent POST or study link this site cannot accept; the message is shown to the participant."""


@dataclass(frozen=True)
class Identity:
    """Who enters, as the platform names them: the participant's id and what is kept beside it."""

    platform_id: str
    study_id: str = ""
    session_id: str = ""
    assignment_fields: Mapping[str, str] = field(default_factory=dict)  # stored on the Assignment


# Django's own CSRF check, run by the platforms whose consent form rests on the CSRF cookie (the entry view
# is csrf_exempt so that a cookie-less platform can check its form in its own way).
_django_csrf = CsrfViewMiddleware(lambda request: HttpResponse())


def _clip(value: str, width: int = 200) -> str:
    """A link parameter cut to its column's width, for lookups and storage alike."""
    return value.strip()[:width]


class Platform(ABC):
    """The open-link behaviour; platforms override what differs."""

    name: ClassVar[str]
    label: ClassVar[str]
    recruits: ClassVar[bool] = True  # an experiment may name it (the simulated crowd may not)
    link_params: ClassVar[tuple[str, ...]] = ()  # what the platform appends to the study link
    needs: ClassVar[str] = ""  # the parameters a link must carry, for the error message
    # Whether the consent form is protected by Django's CSRF cookie and the participant's browser is tied
    # to the assignment by its session. False for a platform whose pages live in a cross-site frame, where
    # browsers block cookies: the assignment token in the URL is then the only authority.
    uses_cookies: ClassVar[bool] = True
    # Whether the platform's submission ids are the site's assignment ids (Assignment.mturk_assignment_id);
    # else a submission stands for the worker's latest assignment (review proposals, webapp/recruit).
    submission_is_assignment: ClassVar[bool] = False
    driven_from_lab: ClassVar[bool] = False  # the lab creates, reviews and pays on it (webapp/recruit/)

    def frame_ancestors(self) -> list[str]:
        """Origins that may frame this platform's participant pages (CSP frame-ancestors); none: DENY."""
        return []

    def is_preview(self, request: HttpRequest) -> bool:
        """Whether this visit only previews the study (nothing may be stored)."""
        return False

    def refuse_form(self, request: HttpRequest, exp: Experiment) -> HttpResponse | None:
        """The answer to a consent POST that is not from this site's own form, or None to go on."""
        return _django_csrf.process_view(request, None, (), {})

    @abstractmethod
    def identity(self, request: HttpRequest, exp: Experiment) -> Identity | None:
        """The entering participant from the link (GET) or the consent form (POST); None if the link
        lacks what the platform always sends; BadEntry if the form was tampered with."""

    def consent_fields(self, request: HttpRequest, exp: Experiment) -> dict[str, str]:
        """Hidden fields of the consent form: the link's parameters, carried through the POST."""
        return {k: v for k, v in request.GET.items() if k in self.link_params}

    def consented(self, request: HttpRequest, exp: Experiment, ident: Identity) -> None:
        """Called once consent is given, before the assignment is made (nothing by default)."""
        return None

    def resumable(self, assignments: QuerySet[Assignment], ident: Identity) -> QuerySet[Assignment]:
        """Of the participant's assignments, those a return with ``ident`` resumes."""
        return assignments

    def completion_code(self, exp: Experiment) -> str:
        """The code a participant is given at the end: the study's, else one of their own."""
        return exp.completion_code or get_random_string(10).upper()

    def completion_redirect(self, a: Assignment) -> str | None:
        """Where the browser goes after the last trial (None: stay on the completion page)."""
        return None

    def submit_form(self, a: Assignment) -> tuple[str, dict[str, str]] | None:
        """(action URL, fields) of a form the completion page posts back to the platform, if any."""
        return None

    def return_instructions(self, exp: Experiment) -> str:
        """What a participant who declines consent or withdraws should do on the platform (e.g. return the
        submission, so that the place is freed); empty when nothing."""
        return ""

    def forget(self, request: HttpRequest, exp: Experiment, platform_id: str) -> None:
        """Called when the participant ``platform_id`` withdraws from this browser: drop what the platform
        keeps of them in the session (nothing by default)."""
        return None

    def check_spec(self, fields: Mapping[str, object]) -> str | None:
        """What is wrong with an experiment file's fields for this platform (None: nothing)."""
        return None

    def simulated_link(self, run_id: str, index: int) -> dict[str, str]:
        """The query string this platform would add to the study link, for a simulated participant."""
        return {}
