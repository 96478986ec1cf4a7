"""Who may see which experiment: owners see their own, superusers see all."""

from __future__ import annotations

from django.shortcuts import get_object_or_404


def experiments_for(user):
    """Experiments ``user`` may see (none for anonymous users)."""
    from webapp.experiments.models import Experiment

    qs = Experiment.objects.all().order_by("-created", "slug")
    if not user.is_authenticated:
        return qs.none()
    return qs if user.is_superuser else qs.filter(owner=user)


def experiment_for(user, slug: str):
    """The experiment ``slug`` if ``user`` may see it, else Http404 (never reveals that it exists)."""
    return get_object_or_404(experiments_for(user), slug=slug)


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


class OwnedByResearcherAdmin:
    """Admin mixin: researchers (staff, not superusers) see and edit only rows of their own experiments.

    ``owner_field`` is the lookup from the model to the experiment's owner, e.g. ``"experiment__owner"``.
    """

    owner_field = "owner"

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs if request.user.is_superuser else qs.filter(**{self.owner_field: request.user})
