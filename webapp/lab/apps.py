from django.apps import AppConfig


class LabConfig(AppConfig):
    """Researcher side: dashboard, QC, analysis, export and the REST API."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "webapp.lab"
    label = "lab"
    verbose_name = "Researcher lab"

    def ready(self) -> None:
        from webapp.lab import receivers  # noqa: F401  (connects them; it imports models)
