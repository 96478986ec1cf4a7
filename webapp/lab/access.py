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
