"""``python manage.py prolific SUBCOMMAND SLUG ...``: the experiment's Prolific study, from the lab.

    create-study SLUG --reward-cents N --minutes M [--places N] [--url URL] [--description TEXT] [--publish]
    publish SLUG | pause SLUG
    list SLUG                                   submissions with their status (and what was decided here)
    review SLUG [--json]                        what the site proposes for the submissions awaiting review
    approve SLUG SUBMISSION_ID... | --all-proposed
    reject SLUG SUBMISSION_ID... --reason TEXT --category CAT
    reject SLUG --all-proposed [--reason TEXT] [--category CAT]
    return SLUG SUBMISSION_ID... --reason TEXT [--reason TEXT ...]
    bonus SLUG SUBMISSION_ID --amount 0.50 --reason TEXT

The token comes from ``PROLIFIC_TOKEN``; the API from ``PROLIFIC_API_URL``. Every error is one line.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from webapp.experiments.models import Experiment
from webapp.recruit import prolific as p
from webapp.recruit.models import Decision


class Command(BaseCommand):
    help = "Create, publish, pause, review and pay the experiment's Prolific study (token: PROLIFIC_TOKEN)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

        c = sub.add_parser("create-study", help="create the Prolific study (a draft unless --publish)")
        c.add_argument("slug")
        c.add_argument("--reward-cents", type=int, required=True,
                       help="reward per participant in the account currency's minor unit (pence/cents)")
        c.add_argument("--minutes", type=int, required=True, help="estimated completion time in minutes")
        c.add_argument("--places", type=int, help="participants to recruit (default: from the plan)")
        c.add_argument("--url", help="the participant link (default: SITE_URL + /p/<slug>/)")
        c.add_argument("--description", help="what participants read before taking part")
        c.add_argument("--publish", action="store_true",
                       help="publish it right away (the study must be live here)")

        for name, text in (("publish", "publish the study (or resume it when paused)"),
                           ("pause", "pause the study"), ("list", "list the submissions with their status")):
            sub.add_parser(name, help=text).add_argument("slug")

        r = sub.add_parser("review", help="proposals (approve / reject with QC reasons / manual)")
        r.add_argument("slug")
        r.add_argument("--json", action="store_true", help="as JSON")

        a = sub.add_parser("approve", help="approve submissions")
        a.add_argument("slug")
        a.add_argument("ids", nargs="*", metavar="SUBMISSION_ID")
        a.add_argument("--all-proposed", action="store_true",
                       help="every submission review proposes to approve")

        j = sub.add_parser("reject", help="reject submissions")
        j.add_argument("slug")
        j.add_argument("ids", nargs="*", metavar="SUBMISSION_ID")
        j.add_argument("--reason", help="the message to the participant (Prolific: at least 100 characters)")
        j.add_argument("--category", choices=p.REJECTION_CATEGORIES, help="Prolific's rejection category")
        j.add_argument("--all-proposed", action="store_true",
                       help="every submission review proposes to reject, with its QC reasons")

        t = sub.add_parser("return", help="ask participants to return their submissions")
        t.add_argument("slug")
        t.add_argument("ids", nargs="+", metavar="SUBMISSION_ID")
        t.add_argument("--reason", action="append", required=True, help="a reason (repeatable)")

        b = sub.add_parser("bonus", help="pay a bonus to the participant of a submission")
        b.add_argument("slug")
        b.add_argument("id", metavar="SUBMISSION_ID", help="a submission id (or the participant id)")
        b.add_argument("--amount", required=True, help="in the currency's major unit, e.g. 0.50")
        b.add_argument("--reason", required=True, help="why (kept here with the payment)")

    def handle(self, *args, **opts):
        try:
            exp = Experiment.objects.get(slug=opts["slug"])
        except Experiment.DoesNotExist:
            raise CommandError(f"unknown experiment {opts['slug']!r}") from None
        try:
            p.check_experiment(exp)
            getattr(self, "do_" + opts["subcommand"].replace("-", "_"))(exp, p.client_from_env(), opts)
        except p.ProlificError as e:
            raise CommandError(str(e)) from None

    def _outcomes(self, outcomes: list[p.Outcome], verb: str) -> None:
        for o in outcomes:
            self.stdout.write(o.line())
        bad = [o for o in outcomes if not o.ok]
        if bad:
            first = bad[0].detail or bad[0].result
            more = f" ({len(bad)} of {len(outcomes)} not {verb}; see above)" if len(bad) > 1 else ""
            raise CommandError(f"{bad[0].submission_id} not {verb}: {first}{more}")

    def do_create_study(self, exp, client, opts) -> None:
        description = opts["description"] or (
            f"{exp.question} You will compare pairs of images ({exp.trials_per_assignment} comparisons and a "
            f"short practice), about {opts['minutes']} minutes.")
        row = p.create_study(exp, client, url=opts["url"], reward=opts["reward_cents"], places=opts["places"],
                             minutes=opts["minutes"], description=description, publish=opts["publish"])
        d = row.details
        state = "published" if opts["publish"] else "draft"
        self.stdout.write(f"Prolific study {row.remote_id} for {exp.slug} ({state}): "
                          f"{d.get('total_available_places')} places, reward {d.get('reward')} (minor unit), "
                          f"{d.get('estimated_completion_time')} min; link {d.get('external_study_url')}")

    def _sync(self, exp, client, status: str) -> None:
        if p.linked_study(exp) is None:
            raise CommandError(f"no Prolific study is recorded for {exp.slug!r}: run create-study first")
        self.stdout.write(p.sync_status(exp, status, client) or "")

    def do_publish(self, exp, client, opts) -> None:
        if exp.status != "live":
            raise CommandError(f"experiment {exp.slug!r} is {exp.status} here; set it live first "
                               "(participants sent from Prolific would find it closed)")
        self._sync(exp, client, "live")

    def do_pause(self, exp, client, opts) -> None:
        self._sync(exp, client, "paused")

    def do_list(self, exp, client, opts) -> None:
        subs = p.submissions(exp, client)
        decided: dict[str, list[str]] = {}
        for sid, action, state in Decision.objects.filter(
                platform=p.PLATFORM, submission_id__in=[s.submission_id for s in subs]).values_list(
                "submission_id", "action", "state"):
            decided.setdefault(sid, []).append(f"{action} {state}")
        self.stdout.write(f"{'submission':<26} {'participant':<26} {'status':<16} here")
        for s in subs:
            self.stdout.write(f"{s.submission_id:<26} {s.worker_id:<26} {s.status:<16} "
                              f"{', '.join(decided.get(s.submission_id, [])) or '-'}")
        self.stdout.write(f"{len(subs)} submissions")

    def do_review(self, exp, client, opts) -> None:
        proposals = p.review(exp, client)
        if opts["json"]:
            self.stdout.write(json.dumps([x.as_dict() for x in proposals], indent=2))
            return
        for x in proposals:
            self.stdout.write(f"{x.submission.submission_id:<26} {x.submission.worker_id:<26} {x.action:<8} "
                              f"{'; '.join(x.reasons)}")
        self.stdout.write(f"{len(proposals)} submissions awaiting review")

    @staticmethod
    def _ids_or_all(opts) -> None:
        if bool(opts["ids"]) == bool(opts["all_proposed"]):
            raise CommandError("give submission ids or --all-proposed (one of the two)")

    def do_approve(self, exp, client, opts) -> None:
        self._ids_or_all(opts)
        if opts["all_proposed"]:
            outcomes = p.approve_proposed(exp, client)
        else:
            outcomes = p.approve(exp, client, opts["ids"])
        if not outcomes:
            self.stdout.write("nothing proposed for approval")
        self._outcomes(outcomes, "approved")

    def do_reject(self, exp, client, opts) -> None:
        self._ids_or_all(opts)
        if opts["all_proposed"]:
            outcomes = p.reject_proposed(exp, client, reason=opts["reason"], category=opts["category"])
        else:
            if not opts["reason"] or not opts["category"]:
                raise CommandError("rejecting by id needs --reason (the message to the participant) and "
                                   "--category")
            outcomes = p.reject(exp, client, opts["ids"], reason=opts["reason"], category=opts["category"])
        if not outcomes:
            self.stdout.write("nothing proposed for rejection")
        self._outcomes(outcomes, "rejected")

    def do_return(self, exp, client, opts) -> None:
        self._outcomes(p.request_return(exp, client, opts["ids"], reasons=opts["reason"]), "asked to return")

    def do_bonus(self, exp, client, opts) -> None:
        self._outcomes([p.bonus(exp, client, opts["id"], opts["amount"], opts["reason"])], "paid")
