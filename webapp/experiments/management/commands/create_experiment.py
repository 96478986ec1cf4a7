"""``manage.py create_experiment FILE [--owner USER] [--replace]``: an experiment from JSON or YAML."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from webapp.experiments.spec import SpecError, create, load_file


class Command(BaseCommand):
    help = "Create an experiment (status draft unless the file says otherwise) from a JSON/YAML file."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--owner", help="username of the researcher who owns it")
        parser.add_argument("--replace", action="store_true", help="replace a draft with the same slug")

    def handle(self, *args, **o):
        owner = None
        if o["owner"]:
            owner = get_user_model().objects.filter(username=o["owner"]).first()
            if owner is None:
                raise CommandError(f"--owner: no user named {o['owner']!r}")
        try:
            exp = create(load_file(Path(o["file"])), owner=owner, replace=o["replace"])
        except SpecError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"created experiment {exp.slug!r} ({exp.status}); codecs: {exp.codec_settings}")
