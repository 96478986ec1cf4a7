"""``manage.py share_experiment SLUG USERNAME --role viewer|editor|owner`` (or ``--remove``): one member's
role on a study; ``share_experiment SLUG`` lists the members."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from webapp.experiments import access
from webapp.experiments.models import Experiment


class Command(BaseCommand):
    help = ("Give USERNAME a role on experiment SLUG (viewer: read; editor: also status, sampling, exports; "
            "owner: also recruiting and payments, erasure, members), or take it away with --remove. "
            "Without either, list the members.")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("username", nargs="?")
        how = parser.add_mutually_exclusive_group()
        how.add_argument("--role", choices=access.ROLES)
        how.add_argument("--remove", action="store_true", help="take the user's role away")

    def handle(self, *args, **o):
        exp = Experiment.objects.filter(slug=o["slug"]).first()
        if exp is None:
            raise CommandError(f"no experiment {o['slug']!r}")
        if o["username"] is None:
            if o["role"] or o["remove"]:
                raise CommandError("name the user whose role to set or remove")
            for user, role, of_record in access.members(exp):
                self.stdout.write(f"{user.get_username()}\t{role}{' (owner of record)' if of_record else ''}")
            return
        user = get_user_model().objects.filter(username=o["username"]).first()
        if user is None:
            raise CommandError(f"no user named {o['username']!r}")
        if not (o["role"] or o["remove"]):
            raise CommandError("say --role viewer|editor|owner or --remove")
        try:
            if o["remove"]:
                if not access.remove_member(exp, user):
                    raise CommandError(f"{user.get_username()} has no membership of {exp.slug!r}")
                self.stdout.write(f"{user.get_username()} no longer has a role on {exp.slug!r}")
            else:
                access.set_role(exp, user, o["role"])
                self.stdout.write(f"{user.get_username()} is {o['role']} of {exp.slug!r}")
        except access.MembershipError as exc:
            raise CommandError(str(exc)) from None
