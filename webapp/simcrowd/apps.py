from django.apps import AppConfig


class SimcrowdConfig(AppConfig):
    """The simulated crowd and the closed loop: management commands only, no models."""

    name = "webapp.simcrowd"
    label = "simcrowd"
