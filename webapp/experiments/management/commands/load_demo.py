"""``manage.py load_demo``: researcher account, Kodak crops, the demo experiment (live). Idempotent."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from webapp.experiments.models import Experiment
from webapp.experiments.spec import load_file

FIXTURES = Path(settings.BASE_DIR) / "fixtures"
USERNAME, PASSWORD = "researcher", "demo-password"


class Command(BaseCommand):
    help = "Load the demo: user 'researcher', fixtures/images, fixtures/demo_experiment.yaml, set live."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args, **o):
        with transaction.atomic():  # all or nothing (files of a killed run stay unreferenced, never served)
            exp = self._load()
        base = o["base_url"].rstrip("/")
        self.stdout.write(
            f"researcher login: {base}/lab/login/  (user {USERNAME!r}, "
            f"password {PASSWORD!r}); dashboard {base}/lab/"
        )
        self.stdout.write(f"participant link: {base}/p/{exp.slug}/")

    def _load(self) -> Experiment:
        User = get_user_model()
        user, created = User.objects.get_or_create(username=USERNAME, defaults={"is_staff": True})
        if created:
            user.set_password(PASSWORD)
            user.save()
        call_command(
            "import_images",
            str(FIXTURES / "images"),
            source="Kodak PhotoCD (crop)",
            licence="Kodak: free for research use",
            stdout=self.stdout,
        )
        spec = load_file(FIXTURES / "demo_experiment.yaml")
        exp = Experiment.objects.filter(slug=spec["slug"]).first()
        if exp is None:
            call_command(
                "create_experiment",
                str(FIXTURES / "demo_experiment.yaml"),
                owner=USERNAME,
                stdout=self.stdout,
            )
            exp = Experiment.objects.get(slug=spec["slug"])
        if not exp.trials.exists():
            call_command("make_stimuli", exp.slug, stdout=self.stdout)
        if exp.references.filter(saliency="").exists():  # weight-free maps for the dashboard thumbnails
            call_command("import_saliency", compute="spectral", missing_only=True, stdout=self.stdout)
        if exp.status != "live":
            exp.status = "live"
            exp.save(update_fields=["status"])
        return exp
