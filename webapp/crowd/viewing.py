"""Viewing conditions at entry: what the consent page measured in the browser, checked against the study's
``viewing:`` block (``experiments.spec.viewing_conditions``) and the User-Agent.

The consent page (``static/crowd/entry.js``) sends its measurements in the form field ``viewing`` (JSON:
``viewport`` [W, H] CSS pixels, ``dpr``, ``screen``, ``mobile``, ``fullscreen``: whether the page may go
fullscreen). The server decides from them: a participant who does not meet the conditions is refused
before anything is stored. What happens later, during the trials, is recorded per judgment
(``judging.EVENTS``, sent by ``task.js``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.utils.translation import gettext

FIELD = "viewing"  # the consent form's field
MAX_FIELD_CHARS = 1000
RATIO_TOLERANCE = 0.01  # devicePixelRatio is a float (110 % zoom on a 1x screen: 1.100000023841858)
# Phones and tablets by their User-Agent; iPads that present themselves as Macs are told apart in the
# browser (a "Macintosh" with a touch screen), which sends that as ``mobile``.
MOBILE_UA = re.compile(r"Mobi|Android|iPhone|iPad|iPod|Tablet|Silk|Kindle|PlayBook|BlackBerry|Opera Mini|"
                       r"IEMobile|webOS", re.IGNORECASE)


def _size(v: object) -> list[float] | None:
    ok = isinstance(v, list) and len(v) == 2
    ok = ok and all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x < 1e6 for x in v)
    return v if ok else None


def parse_facts(raw: str | None) -> dict[str, Any] | None:
    """The measurements the consent page sent in ``viewing``, or None when missing or malformed (a viewport
    and a positive pixel ratio are required; the rest defaults to false)."""
    if not raw or len(raw) > MAX_FIELD_CHARS:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    viewport, dpr = _size(data.get("viewport")), data.get("dpr")
    if viewport is None or isinstance(dpr, bool) or not isinstance(dpr, (int, float)) or not 0 < dpr < 100:
        return None
    return {"viewport": viewport, "dpr": float(dpr), "screen": _size(data.get("screen")),
            "mobile": data.get("mobile") is True, "fullscreen": data.get("fullscreen") is True}


def ratio_allowed(dpr: float, allowed: list[float] | None) -> bool:
    """Whether ``dpr`` is one of the ``allowed`` pixel ratios (None: any)."""
    return allowed is None or any(abs(dpr - r) < RATIO_TOLERANCE for r in allowed)


def _number(x: float) -> str:
    return f"{round(x, 2):g}"


def refusals(conditions: dict[str, Any], facts: dict[str, Any] | None, user_agent: str) -> list[str]:
    """Why a participant with these measurements (None: the page sent none) and this User-Agent may not take
    part, one translated sentence per unmet condition; empty when every condition is met."""
    if facts is None:
        return [gettext("Your browser did not report its window size, which this study needs to check. "
                        "Please allow JavaScript for this page, then open the study link again.")]
    out = []
    if not conditions["mobile"] and (facts["mobile"] or MOBILE_UA.search(user_agent or "")):
        out.append(gettext("This study cannot be done on a phone or tablet. Please take part on a computer."))
    need = conditions["min_viewport"]
    w, h = facts["viewport"]
    if need and (w < need[0] or h < need[1]):
        out.append(gettext(
            "Your browser window is %(width)s × %(height)s pixels; this study needs at least %(min_width)s × "
            "%(min_height)s, so that the images fit at full size. Enlarge the window (or use a larger "
            "screen), then open the study link again.") % {
            "width": _number(w), "height": _number(h), "min_width": need[0], "min_height": need[1]})
    allowed = conditions["pixel_ratios"]
    if not ratio_allowed(facts["dpr"], allowed):
        out.append(gettext(
            "Your screen's pixel ratio is %(ratio)s; this study needs %(allowed)s, so that each pixel of an "
            "image is one pixel of the screen. Set the browser's zoom to 100 %% (or use another screen), "
            "then open the study link again.") % {
            "ratio": _number(facts["dpr"]), "allowed": ", ".join(_number(r) for r in allowed)})
    if conditions["fullscreen"] and not facts["fullscreen"]:
        out.append(gettext("This study shows its trials in fullscreen, which your browser does not allow on "
                           "this page. Please use another browser."))
    return out


def requirements(conditions: dict[str, Any] | None) -> list[str]:
    """The conditions as translated sentences for the consent page (what a participant needs)."""
    if not conditions:
        return []
    out = []
    if conditions["min_viewport"]:
        w, h = conditions["min_viewport"]
        out.append(gettext("A browser window of at least %(width)s × %(height)s pixels.") % {
            "width": w, "height": h})
    if conditions["pixel_ratios"]:
        out.append(gettext("A screen pixel ratio of %(allowed)s (the browser's zoom at 100 %%).") % {
            "allowed": ", ".join(_number(r) for r in conditions["pixel_ratios"])})
    if not conditions["mobile"]:
        out.append(gettext("A computer: phones and tablets cannot take part."))
    if conditions["fullscreen"]:
        out.append(gettext("The trials are shown in fullscreen."))
    return out
