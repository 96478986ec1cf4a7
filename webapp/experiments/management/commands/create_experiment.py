"""``manage.py create_experiment FILE [--owner USER] [--member USER:ROLE ...] [--replace]``: an experiment
from JSON or YAML."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from webapp.experiments import access
from webapp.experiments.spec import SpecError, create, load_file


def _user(username: str, option: str):
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"{option}: no user named {username!r}")
    return user


class Command(BaseCommand):
    help = "Create an experiment (status draft unless the file says otherwise) from a JSON/YAML file."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--owner", help="username of the researcher who owns it (its owner of record)")
        parser.add_argument("--member", action="append", default=[], metavar="USER:ROLE",
                            help=f"share it: USER gets ROLE ({', '.join(access.ROLES)}); repeatable")
        parser.add_argument("--replace", action="store_true", help="replace a draft with the same slug")

    def handle(self, *args, **o):
        owner = _user(o["owner"], "--owner") if o["owner"] else None
        shares = []
        for item in o["member"]:
            name, _, role = item.rpartition(":")
            if not name or role not in access.ROLES:
                raise CommandError(f"--member {item!r}: expected USER:ROLE, ROLE one of "
                                   f"{', '.join(access.ROLES)}")
            shares.append((_user(name, "--member"), role))
        try:
            with transaction.atomic():
                exp = create(load_file(Path(o["file"])), owner=owner, replace=o["replace"])
                for user, role in shares:
                    if user != owner:  # the owner of record is an owner already
                        access.set_role(exp, user, role)
        except SpecError as exc:
            raise CommandError(str(exc)) from exc
        except access.MembershipError as exc:
            raise CommandError(f"--member: {exc}") from exc
        shared = "".join(f"; {u.get_username()} is {r}" for u, r in shares)
        self.stdout.write(f"created experiment {exp.slug!r} ({exp.status}); codecs: {exp.codec_settings}"
                          f"{shared}")
