"""Whether a POST comes from a page of this site: the checks that stand in for a CSRF cookie where the
request carries no cookie-borne authority (the JSON API, the consent form inside MTurk's frame)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def _own(request: HttpRequest) -> list[str]:
    return [f"{request.scheme}://{request.get_host()}", *settings.CSRF_TRUSTED_ORIGINS]


def foreign_origin(request: HttpRequest) -> bool:
    """Whether the ``Origin`` header names another site than this one (or CSRF_TRUSTED_ORIGINS). Browsers
    send it with every POST; a request without one does not come from a browser's page."""
    origin = request.headers.get("Origin")
    return origin is not None and origin not in _own(request)


def from_own_page(request: HttpRequest) -> bool:
    """Whether a form POST names one of this site's pages as its source: ``Origin`` if the browser sent
    one, else a ``Referer`` under this site. Neither: refused (a form in a browser sends at least one)."""
    own = _own(request)
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin in own
    referer = request.headers.get("Referer", "")
    return any(referer.startswith(o + "/") for o in own)
