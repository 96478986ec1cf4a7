from django.apps import AppConfig


class RecruitConfig(AppConfig):
    """Recruiting from the lab: MTurk HITs and Prolific studies, created, reviewed and paid from here."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "webapp.recruit"
    label = "recruit"
    verbose_name = "Recruiting (MTurk, Prolific)"

    def ready(self) -> None:
        from webapp.recruit import receivers  # noqa: F401  (connects them; it imports models)
