from django.apps import AppConfig


class StimuliConfig(AppConfig):
    """Reference images and their decoded distortions (stimuli)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "webapp.stimuli"
    label = "stimuli"
