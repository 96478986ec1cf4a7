"""``python manage.py simulate_crowd SLUG --observer SPEC --participants N [...]``: a simulated crowd judging
a live study over real HTTP (see ``webapp/simcrowd/run.py``), then a summary."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from learning.agreement import judgments_needed
from webapp.simcrowd.client import Behaviour, SimulationError
from webapp.simcrowd.run import SimConfig, Summary, simulate


class Command(BaseCommand):
    help = (
        "Simulated participants (platform 'simulated') judge a live experiment over HTTP as the worker page "
        "does, answering like an observer: a metric of the registry (psnr, ms-ssim, lpips-alex, dpl:FILE) or "
        "observer:FILE (a DPL weight file), P(p1) = Phi((d0-d1)/(TAU*s)). Without --base-url the site is "
        "served from this process. Refuses a live experiment with real participants unless --force."
    )

    def add_arguments(self, parser):
        parser.add_argument("experiment", help="experiment slug (must be live)")
        parser.add_argument("--observer", required=True, metavar="SPEC",
                            help="metric name (psnr, ms-ssim, ciede2000, lpips-alex, dpl:FILE, ...), "
                                 "observer:FILE, or a weighted sum: 0.5*lpips-alex+0.3*ciede2000+0.2*ms-ssim "
                                 "(each term scaled by its spread over the study's trials)")
        parser.add_argument("--participants", type=int, required=True, metavar="N")
        parser.add_argument("--concurrency", type=int, default=4, metavar="C",
                            help="participants judging at once (default 4)")
        parser.add_argument("--noise", type=float, default=0.5, metavar="TAU",
                            help="noise in units of the metric's spread (0: noiseless; default 0.5)")
        parser.add_argument("--lapse", type=float, default=0.0, metavar="P",
                            help="share of fast random guesses (default 0)")
        parser.add_argument("--rt-median", type=float, default=1200.0, metavar="MS",
                            help="median response time of considered answers, lognormal (default 1200)")
        parser.add_argument("--seed", type=int, default=None, help="seed (default: random, printed)")
        parser.add_argument("--base-url", default=None, metavar="URL",
                            help="a running site on the same database (default: serve it from this process)")
        parser.add_argument("--force", action="store_true",
                            help="simulate even though real participants have entered")
        parser.add_argument("--agreement-curve", action="store_true",
                            help="print the agreement of a k-judgment majority vs k judgments per trial")
        parser.add_argument("--reload-rate", type=float, default=Behaviour.reload_rate,
                            help="per answer, chance of a page reload (default %(default)s)")
        parser.add_argument("--resend-rate", type=float, default=Behaviour.resend_rate,
                            help="per answer, chance of re-sending an acknowledged one (default %(default)s)")
        parser.add_argument("--pace", action="store_true", help="wait each response time for real")

    def handle(self, *args, **o):
        cfg = SimConfig(
            slug=o["experiment"], observer=o["observer"], participants=o["participants"],
            concurrency=o["concurrency"], noise=o["noise"], lapse=o["lapse"], rt_median_ms=o["rt_median"],
            seed=o["seed"], base_url=o["base_url"], force=o["force"], agreement_curve=o["agreement_curve"],
            behaviour=Behaviour(reload_rate=o["reload_rate"], resend_rate=o["resend_rate"], pace=o["pace"]),
        )
        try:
            s = simulate(cfg)
        except SimulationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(format_summary(s))
        if not s.audit_ok:
            raise CommandError(f"audit failed: {s.stored} judgments stored, {s.acknowledged} acknowledged")
        if s.interrupted:
            raise CommandError("interrupted (Ctrl-C): the judgments above are complete and acknowledged")
        if s.failures and not s.acknowledged:  # stored == acknowledged == 0 passes the audit but is no pilot
            raise CommandError(f"no judgment was made: {len(s.failures)} simulated participant(s) failed, "
                               f"e.g. {s.failures[0]}")


def format_summary(s: Summary) -> str:
    """The printed summary: run, audit, throughput, QC, and the agreement curve when computed."""
    cpu = f", {s.cpu_ms_per_judgment:.1f} ms CPU per judgment (this process)" if s.cpu_ms_per_judgment else ""
    lines = [
        f"simulate_crowd {s.slug}: observer {s.observer}, seed {s.seed}, spread s = {s.spread:.4g}, "
        f"site {s.base_url}",
        f"participants: {s.participants} entered, {s.completed} completed"
        + (f", {s.no_trials} found no trials left" if s.no_trials else ""),
        f"judgments: {s.acknowledged} acknowledged, {s.stored} stored ("
        + ("audit ok" if s.audit_ok else "AUDIT MISMATCH")
        + f"); {s.replays} replays answered, {s.retries} retries, {s.reloads} page reloads"
        + (f", {s.rejected} refused" if s.rejected else ""),
        f"throughput: {s.judgments_per_s:.1f} judgments/s over {s.wall_s:.1f} s{cpu}",
        f"QC: {s.flagged} of {len(s.participant_ids)} simulated participants flagged"
        + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(s.flag_reasons.items())) + ")"
           if s.flag_reasons else ""),
    ]
    if s.rate_limited:
        lines.append(f"the entry link was rate-limited {s.rate_limited} times (serve the site with "
                     "CROWD_RATE_LIMIT=0 for simulations)")
    for f in s.failures[:5]:
        lines.append(f"  problem: {f}")
    if len(s.failures) > 5:
        lines.append(f"  ... and {len(s.failures) - 5} more problems")
    if s.curve:
        pw = f"{s.pairwise:.3f}" if s.pairwise is not None else "n/a"
        lines.append(f"agreement vs judgments per trial (from {s.judgments_per_trial:.1f} judgments per "
                     f"trial collected; judge-pair agreement {pw}):")
        lines.append("  k    " + " ".join(f"{k:>5d}" for k in s.curve))
        lines.append("  agr  " + " ".join(f"{v:5.3f}" for v in s.curve.values()))
        for target in (0.8, 0.9, 0.95):
            k = judgments_needed(s.curve, target)
            need = f"{k}" if k else f"more than {max(s.curve)}"
            lines.append(f"  {target:.0%} agreement needs {need} judgments per trial")
    return "\n".join(lines) + "\n"
