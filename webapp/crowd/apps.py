from django.apps import AppConfig


class CrowdConfig(AppConfig):
    """The worker side: participants, assignments, judgments, the judging page."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "webapp.crowd"
    label = "crowd"
