from django.apps import AppConfig

from webapp.crowd import platforms


class CrowdConfig(AppConfig):
    """The worker side: participants, assignments, judgments, the judging page."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "webapp.crowd"
    label = "crowd"

    def ready(self) -> None:
        from webapp.experiments import spec  # it imports models, which load only once the apps are ready

        for platform in platforms.recruiting():
            spec.PLATFORM_RULES[platform.name] = platform.check_spec
