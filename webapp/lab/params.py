"""Query and form parameters of the dashboard and the API: strict flags and bounded integers."""

from __future__ import annotations

FLAG_VALUES = {"1": True, "true": True, "on": True, "yes": True, "0": False, "false": False, "off": False,
               "no": False, "": False}


def parse_flag(value: str | None) -> bool:
    """A boolean query option (absent = False); ValueError naming the accepted spellings otherwise."""
    if value is None:
        return False
    try:
        return FLAG_VALUES[value.strip().lower()]
    except KeyError:
        raise ValueError("expected one of 1, 0, true, false, on, off, yes, no") from None


BIGINT_MAX = 2**63 - 1  # PostgreSQL's bigint, the type of every primary key (BigAutoField)


def parse_bounded_int(value: str, lo: int, hi: int) -> int:
    """``value`` as a plain decimal integer from ``lo`` (>= 0) to ``hi``; else ValueError naming the range.

    Only ASCII digits are taken (no sign, spaces, underscores or other scripts' digits, all of which
    int() accepts), and the length is checked before int() sees the string.
    """
    digits = value.lstrip("0") or "0"
    if not (value.isascii() and value.isdigit() and len(digits) <= len(str(hi)) and lo <= int(digits) <= hi):
        raise ValueError(f"expected an integer from {lo} to {hi}")
    return int(digits)
