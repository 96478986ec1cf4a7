"""Who may see which experiment: owners see their own, superusers see all (dashboard, API and admin)."""

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


class OwnedByResearcherAdmin:
    """Admin mixin: researchers (staff, not superusers) see and edit only rows of their own experiments.

    ``owner_field`` is the lookup from the model to the experiment's owner, e.g. ``"experiment__owner"``.
    """

    owner_field = "owner"

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs if request.user.is_superuser else qs.filter(**{self.owner_field: request.user})
