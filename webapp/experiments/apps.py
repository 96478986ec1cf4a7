from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    """Experiments and their 2AFC trials."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "webapp.experiments"
    label = "experiments"
