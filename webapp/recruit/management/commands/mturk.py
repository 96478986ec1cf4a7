"""``manage.py mturk create-hit | list | review | approve | reject | bonus SLUG ...``: MTurk from the lab.

The sandbox unless ``--live`` (real money); credentials from the environment or ``--profile NAME`` (boto3's
chain), never stored. Every action goes through ``webapp.recruit.mturk``; errors are one-line CommandErrors.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from webapp.experiments.models import Experiment
from webapp.lab.analysis import progress
from webapp.recruit import mturk as service
from webapp.recruit.models import PlatformStudy


def _common(p) -> None:
    p.add_argument("slug", help="experiment slug")
    p.add_argument("--live", action="store_true",
                   help="the real marketplace: spends money (default: the sandbox)")
    p.add_argument("--profile", help="AWS profile for the credentials (default: boto3's chain, e.g. the "
                                     "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment)")


class Command(BaseCommand):
    help = ("Amazon MTurk for a study: create-hit, list, review, approve, reject, bonus (sandbox unless "
            "--live).")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, title="actions")

        p = sub.add_parser("create-hit", help="a HIT whose ExternalQuestion frames the study link")
        _common(p)
        p.add_argument("--reward", required=True, help="USD per assignment, e.g. 0.50")
        p.add_argument("--assignments", type=int,
                       help="default: what the study still needs (missing judgments / trials per assignment)")
        p.add_argument("--frame-height", type=int, default=0, help="pixels; 0 (default): the whole window")
        p.add_argument("--lifetime-hours", type=float, default=72, help="how long workers can accept it")
        p.add_argument("--auto-approve-hours", type=float, default=72,
                       help="a submission not reviewed by then is approved by MTurk")
        p.add_argument("--title", help="default: the study's title")
        p.add_argument("--description", help="default: the study's question")
        p.add_argument("--keywords", default="image, comparison, perception, quality, research")
        p.add_argument("--url", help="the study link (default: SITE_URL/p/SLUG/)")

        p = sub.add_parser("list", help="the study's HITs and the account balance")
        _common(p)

        p = sub.add_parser("review", help="submissions with a proposal each (approve / reject / manual)")
        _common(p)
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")

        p = sub.add_parser("approve", help="approve submissions (each once)")
        _common(p)
        p.add_argument("assignment_ids", nargs="*", metavar="ASSIGNMENT_ID")
        p.add_argument("--all-proposed", action="store_true",
                       help="every submitted assignment the review proposes to approve")
        p.add_argument("--feedback", default="", help="a message to the workers (optional)")

        p = sub.add_parser("reject", help="reject submissions (each once), with a reason the worker sees")
        _common(p)
        p.add_argument("assignment_ids", nargs="*", metavar="ASSIGNMENT_ID")
        p.add_argument("--all-proposed", action="store_true",
                       help="every submitted assignment the review proposes to reject, with QC's reasons")
        p.add_argument("--reason", default="", help="shown to the worker (required unless --all-proposed)")

        p = sub.add_parser("bonus", help="pay the worker of one assignment a bonus")
        _common(p)
        p.add_argument("assignment_id", metavar="ASSIGNMENT_ID")
        p.add_argument("--amount", required=True, help="USD, e.g. 0.25")
        p.add_argument("--reason", required=True, help="shown to the worker")
        p.add_argument("--again", action="store_true",
                       help="a further bonus to an assignment already paid one")

    def handle(self, *args, **o):
        try:
            exp = Experiment.objects.get(slug=o["slug"])
        except Experiment.DoesNotExist:
            raise CommandError(f"unknown experiment {o['slug']!r}") from None
        run = getattr(self, "_" + o["action"].replace("-", "_"))
        try:
            # refusals come before any client exists: nothing is asked of MTurk
            service.check_study(exp, hit=o["action"] == "create-hit")
            if o["action"] in ("approve", "reject"):
                self._check_ids(o)
            if o["action"] == "create-hit":
                service.study_url(exp, o["url"])
                service.cost_estimate(o["reward"], 1)  # a bad reward is refused here too
            mturk = service.client(live=o["live"], profile=o["profile"])
            live = service.is_live(mturk)
            # with --json, stdout carries the JSON only
            out = self.stderr if o.get("json") else self.stdout
            out.write(f"{service.mode_line(live)}: {mturk.meta.endpoint_url}")
            run(exp, mturk, live, o)
        except service.MTurkError as exc:
            raise CommandError(str(exc)) from exc

    @staticmethod
    def _check_ids(o: dict) -> None:
        if o["all_proposed"] and o["assignment_ids"]:
            raise CommandError("give assignment ids or --all-proposed, not both")
        if not o["all_proposed"] and not o["assignment_ids"]:
            raise CommandError(f"give the assignment ids to {o['action']}, or --all-proposed")
        if o["action"] == "reject" and not o["all_proposed"] and not o["reason"].strip():
            raise CommandError("a rejection needs --reason (MTurk shows it to the worker): nothing was sent")

    # --- actions ----------------------------------------------------------------------------------------

    def _create_hit(self, exp, mturk, live: bool, o: dict) -> None:
        pending = service.pending_hit(exp, mturk)
        if pending is not None:
            req = pending.details.get("request", {})
            n, reward = int(req.get("MaxAssignments", 1)), req.get("Reward", "0")
            self.stdout.write(f"a HIT request of {pending.created:%Y-%m-%d %H:%M} had no answer (token "
                              f"{pending.request_token}): settling it first, with its own parameters "
                              f"({n} assignments at ${reward}); the options given now are not used")
        else:
            p = progress(exp)
            n = o["assignments"] if o["assignments"] is not None else service.planned_assignments(exp)
            reward = o["reward"]
            how = "asked" if o["assignments"] is not None else (
                f"planned: {p['target_judgments'] - p['collected_judgments']} judgments missing / "
                f"{exp.trials_per_assignment} trials per assignment")
            self.stdout.write(f"study {exp.slug}: {p['collected_judgments']} of {p['target_judgments']} "
                              f"judgments collected; {n} assignments ({how})")
            earlier = PlatformStudy.objects.filter(experiment=exp, platform="mturk", sandbox=not live,
                                                   state="created").count()
            if earlier:
                self.stdout.write(f"note: the study has {earlier} earlier HIT(s) here; their open "
                                  "assignments are not subtracted")
        cost = service.cost_estimate(reward, n)
        self.stdout.write(cost.line() + ("" if live else " (sandbox: not charged)"))
        r = service.create_hit(
            exp, mturk, url=o["url"], reward=o["reward"], assignments=o["assignments"],
            frame_height=o["frame_height"], lifetime_hours=o["lifetime_hours"], title=o["title"],
            description=o["description"], keywords=o["keywords"], auto_approve_hours=o["auto_approve_hours"],
            live=live)
        how = " (MTurk had made it already: found by its token, not made again)" if r.found else ""
        self.stdout.write(self.style.SUCCESS(
            f"HIT {r.hit_id} (type {r.hit_type_id}): {r.assignments} assignments at ${r.reward}{how}"))
        if r.preview:
            self.stdout.write(f"workers see it at {r.preview}")

    def _list(self, exp, mturk, live: bool, o: dict) -> None:
        b = service.balance(mturk)
        held = f", ${b.on_hold} on hold" if b.on_hold else ""
        self.stdout.write(f"balance: ${b.available} available{held}")
        hits = service.list_hits(exp, mturk)
        if not hits:
            self.stdout.write(f"no HITs for {exp.slug} here")
            return
        self.stdout.write(f"{'HIT':<32} {'state':<10} {'status':<14} {'max':>5} {'avail':>5} {'pend':>5} "
                          f"{'done':>5} {'reward':>7}  expires")
        dash = lambda v: "-" if v is None else v  # noqa: E731
        for h in hits:
            name = h.hit_id or f"(token {h.request_token[:8]})"
            self.stdout.write(f"{name:<32} {h.state:<10} {h.status[:14]:<14} "
                              f"{dash(h.max_assignments):>5} {dash(h.available):>5} {dash(h.pending):>5} "
                              f"{dash(h.completed):>5} {h.reward:>7}  {h.expiration or '-'}")
            if h.error:
                self.stdout.write(f"  {h.error}")

    def _review(self, exp, mturk, live: bool, o: dict) -> None:
        proposals = service.review(exp, mturk)
        if o["json"]:
            self.stdout.write(json.dumps([p.as_dict() for p in proposals], indent=2))
            return
        if not proposals:
            self.stdout.write("no submissions yet")
            return
        self.stdout.write(f"{'assignment':<32} {'worker':<16} {'status':<10} {'proposal':<8}  reasons")
        for p in proposals:
            s = p.submission
            self.stdout.write(f"{s.submission_id:<32} {s.worker_id:<16} {s.status:<10} {p.action:<8}  "
                              f"{'; '.join(p.reasons)}".rstrip())
        counts = {a: sum(p.action == a and p.submission.status == "Submitted" for p in proposals)
                  for a in ("approve", "reject", "manual")}
        self.stdout.write(f"to decide: {counts['approve']} approve, {counts['reject']} reject, "
                          f"{counts['manual']} manual")

    def _proposed(self, exp, mturk, action: str) -> list:
        """The review's proposals to ``action``, of submissions still waiting for a decision."""
        out = [p for p in service.review(exp, mturk)
               if p.action == action and p.submission.status == "Submitted"]
        if not out:
            self.stdout.write(f"nothing proposed to {action}")
        return out

    def _approve(self, exp, mturk, live: bool, o: dict) -> None:
        if not o["all_proposed"]:
            self._report(service.approve(exp, mturk, o["assignment_ids"], feedback=o["feedback"]))
        elif proposed := self._proposed(exp, mturk, "approve"):
            ids = [p.submission.submission_id for p in proposed]
            self._report(service.approve(exp, mturk, ids, feedback=o["feedback"]))

    def _reject(self, exp, mturk, live: bool, o: dict) -> None:
        if not o["all_proposed"]:
            self._report(service.reject(exp, mturk, o["assignment_ids"], o["reason"]))
            return
        if not (proposed := self._proposed(exp, mturk, "reject")):
            return
        reasons = {p.submission.submission_id: _clip(o["reason"].strip() or
                                                     "Quality control: " + "; ".join(p.reasons))
                   for p in proposed}
        self._report(service.reject(exp, mturk, list(reasons), reasons))

    def _bonus(self, exp, mturk, live: bool, o: dict) -> None:
        r = service.bonus(exp, mturk, o["assignment_id"], o["amount"], o["reason"], again=o["again"])
        self._report([r])

    def _report(self, results: list) -> None:
        for r in results:
            line = f"{r.assignment_id} {r.worker_id or '?'}: {r.outcome}: {r.message}"
            self.stdout.write(self.style.SUCCESS(line) if r.outcome == "sent" else line)
        bad = [r for r in results if r.outcome in ("failed", "refused")]
        if bad:
            first = bad[0]
            raise CommandError(f"{len(bad)} of {len(results)} not done ({first.assignment_id}: "
                               f"{first.message})")


def _clip(text: str, limit: int = service.MAX_FEEDBACK) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

