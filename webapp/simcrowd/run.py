"""The simulated crowd's driver (``simulate_crowd``, the closed loop): refusals, the participant threads,
audit, summary.

``simulate(config)`` checks everything that can be checked before anyone enters (experiment live, real
participants only with ``force``, observer spec, the metric scoring the study's own images, the base URL
answering), then runs ``config.participants`` simulated participants (``client``) over
``config.concurrency`` threads against ``config.base_url`` or a server of its own
(``webapp.harness.BackgroundServer``). The
first participant scores its first item alone, so a metric that cannot read the *served* images stops the
run before anything is judged. Ctrl-C stops new answers; answers in flight are finished and acknowledged.
It returns a ``Summary``: counts, the audit (stored == acknowledged, by uuid), throughput, the QC of the
simulated participants and the agreement-vs-judgments-per-trial curve of what they judged.
"""

from __future__ import annotations

import contextlib
import resource
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import requests
import torch
from django.db import connections

from learning.agreement import majority_agreement, pairwise_agreement
from learning.errors import LearningError
from learning.observers import Observer, ObserverDistance
from webapp.crowd.models import Judgment, Participant
from webapp.experiments.models import Experiment
from webapp.harness import BackgroundServer
from webapp.lab.analysis import trial_counts
from webapp.lab.qc import compute_qc
from webapp.lab.simulated_participants import SIMULATED, real_participants
from webapp.simcrowd.client import (
    Behaviour,
    RunStats,
    SimulatedParticipant,
    SimulationAbort,
    SimulationError,
)
from webapp.simcrowd.observers import load_observer, reference_pixels, study_spread

CURVE_KS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)


@dataclass
class SimConfig:
    slug: str
    observer: str
    participants: int
    concurrency: int = 4
    noise: float = 0.5
    lapse: float = 0.0
    rt_median_ms: float = 1200.0
    seed: int | None = None
    base_url: str | None = None
    force: bool = False
    agreement_curve: bool = False
    behaviour: Behaviour = field(default_factory=Behaviour)
    device: torch.device | None = None  # where the observer's deep metrics run (None: the CPU)


@dataclass
class Summary:
    slug: str
    observer: str
    seed: int
    base_url: str
    spread: float
    participants: int = 0
    completed: int = 0
    no_trials: int = 0
    acknowledged: int = 0
    stored: int = 0
    audit_ok: bool = False
    created: int = 0
    replays: int = 0
    rejected: int = 0
    retries: int = 0
    reloads: int = 0
    rate_limited: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    interrupted: bool = False
    failures: list[str] = field(default_factory=list)
    participant_ids: list[int] = field(default_factory=list)
    flagged: int = 0
    flag_reasons: dict[str, int] = field(default_factory=dict)
    curve: dict[int, float] = field(default_factory=dict)
    pairwise: float | None = None
    judgments_per_trial: float = 0.0

    @property
    def judgments_per_s(self) -> float:
        return self.acknowledged / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_ms_per_judgment(self) -> float | None:
        return 1000 * self.cpu_s / self.acknowledged if self.acknowledged else None


# ----- checks -----
def check_experiment(slug: str, force: bool):
    """The live experiment ``slug``; SimulationError saying why not otherwise."""
    exp = Experiment.objects.filter(slug=slug).first()
    if exp is None:
        raise SimulationError(f"unknown experiment {slug!r}")
    if exp.status != "live":
        hint = {"draft": "it is a draft: set it live first (on /lab/e/{s}/)",
                "paused": "it is paused: set it live again first",
                "closed": "it is closed: it takes no more participants"}[exp.status].format(s=slug)
        raise SimulationError(f"experiment {slug!r} is not live ({hint}); nothing judged")
    real = real_participants(exp).count()
    if real and not force:
        raise SimulationError(
            f"experiment {slug!r} is live with {real} real participant{'s' if real != 1 else ''}: simulated "
            "ones would take trial slots from them (pilot on a copy of the study, or use --force; simulated "
            "participants stay marked and out of exports); nothing judged")
    if not exp.trials.filter(kind="normal").exists():
        raise SimulationError(f"experiment {slug!r} has no normal trials (run make_stimuli first)")
    return exp


def check_base_url(url: str) -> str:
    """``url`` without a trailing slash if something answers HTTP there; SimulationError otherwise."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise SimulationError(f"--base-url {url!r}: expected http://HOST[:PORT] or https://...")
    try:
        requests.get(url + "/lab/login/", timeout=5, allow_redirects=False)  # any answer will do
    except requests.RequestException as exc:
        raise SimulationError(f"--base-url {url}: does not answer ({type(exc).__name__}); nothing judged") \
            from None
    return url


def mark_simulated(token: str) -> int:
    """Mark the participant holding assignment ``token`` as simulated; returns the rows changed (0 if the
    token is unknown to this database)."""
    return Participant.objects.filter(assignments__token=token).update(platform=SIMULATED)


# ----- the run -----
class _Run:
    def __init__(self, cfg: SimConfig, exp, cache: ObserverDistance, scale: float, seed: int, base_url: str):
        self.cfg, self.exp, self.cache, self.scale, self.seed, self.base_url = cfg, exp, cache, scale, seed, \
            base_url
        self.stats = RunStats()
        self.stop = threading.Event()
        self.abort: str | None = None
        self.run_id = f"{seed:x}"[-8:] + secrets.token_hex(2)
        self._next = 0
        self._lock = threading.Lock()
        self.scored = threading.Event()

    def _claim(self) -> int | None:
        with self._lock:
            if self._next >= self.cfg.participants or self.stop.is_set():
                return None
            self._next += 1
            return self._next - 1

    def _on_enter(self, token: str) -> None:
        if not mark_simulated(token):
            raise SimulationAbort(f"{self.base_url} does not serve this database (assignment {token} unknown "
                                  "here): give the --base-url of the site on DATABASE_URL")

    def _participant(self, index: int) -> SimulatedParticipant:
        observer = Observer(noise=self.cfg.noise, scale=self.scale, lapse=self.cfg.lapse,
                            rt_median_ms=self.cfg.rt_median_ms,
                            rng=np.random.default_rng([self.seed, index]))
        p = SimulatedParticipant(
            self.base_url, self.exp.slug, self.exp.platform, index, self.run_id, observer, self.cache,
            self.stats, self.stop, on_enter=self._on_enter,
            reference=reference_pixels if self.exp.mode == "pair" else None, behaviour=self.cfg.behaviour)
        return p

    def worker(self, index: int | None = None) -> None:
        """Run participants until none is left; the one given first (``index``) is the probe."""
        probe = index is not None
        index = index if probe else self._claim()
        try:
            while index is not None:
                p = self._participant(index)
                if probe:
                    p.on_scored = self.scored.set
                try:
                    p.run()
                except SimulationAbort as exc:
                    self.abort = self.abort or str(exc)
                    self.stop.set()
                except Exception as exc:  # a bug or an unexpected answer: keep the others going
                    with self.stats.lock:
                        self.stats.failures.append(f"participant {index}: {type(exc).__name__}: {exc}")
                if probe:
                    self.scored.set()
                    probe = False
                index = self._claim()
        finally:
            self.scored.set()
            connections.close_all()

    def run(self) -> bool:
        """Run all participants; True if interrupted (Ctrl-C)."""
        self._next = 1
        threads = [threading.Thread(target=self.worker, args=(0,), name="sim-0")]
        threads[0].start()
        interrupted = False
        try:
            while not self.scored.wait(0.2):
                pass
            if not self.stop.is_set():
                for i in range(1, self.cfg.concurrency):
                    threads.append(threading.Thread(target=self.worker, name=f"sim-{i}"))
                    threads[-1].start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            interrupted = True
            self.stop.set()
            for t in threads:
                t.join()
        return interrupted


def _audit(summary: Summary, stats: RunStats) -> None:
    ids = list(Participant.objects.filter(assignments__token__in=stats.tokens).values_list("pk", flat=True))
    stored = set(map(str, Judgment.objects.filter(assignment__participant_id__in=ids)
                     .values_list("client_uuid", flat=True)))
    summary.participant_ids = sorted(ids)
    summary.stored = len(stored)
    summary.acknowledged = len(stats.acknowledged)
    summary.audit_ok = stored == stats.acknowledged


def _qc(summary: Summary, exp) -> None:
    qc = compute_qc(exp)
    mine = [qc[pid] for pid in summary.participant_ids if pid in qc]
    summary.flagged = sum(p.flagged for p in mine)
    kinds = Counter(r.split(" ")[0] if not r[0].isdigit() else "fast" for p in mine for r in p.reasons)
    summary.flag_reasons = dict(kinds)


def _curve(summary: Summary, exp) -> None:
    others = set(Participant.objects.filter(experiment=exp).exclude(pk__in=summary.participant_ids)
                 .values_list("pk", flat=True))
    counts = list(trial_counts(exp, others).values())
    summary.judgments_per_trial = float(np.mean([n for n, _ in counts])) if counts else 0.0
    summary.curve = majority_agreement(counts, CURVE_KS)
    summary.pairwise = pairwise_agreement(counts)


def simulate(cfg: SimConfig) -> Summary:
    """Run the simulation described by ``cfg`` (see the module docstring)."""
    if cfg.participants < 1 or cfg.concurrency < 1:
        raise SimulationError("--participants and --concurrency must be at least 1")
    exp = check_experiment(cfg.slug, cfg.force)
    observer = load_observer(cfg.observer, cfg.device)
    try:
        Observer(noise=cfg.noise, lapse=cfg.lapse, rt_median_ms=cfg.rt_median_ms)
    except LearningError as exc:
        raise SimulationError(str(exc)) from None
    seed = cfg.seed if cfg.seed is not None else secrets.randbits(32)
    base = check_base_url(cfg.base_url) if cfg.base_url else None
    scale = study_spread(exp, observer, seed)
    server = BackgroundServer() if base is None else contextlib.nullcontext(base)
    with server as url:
        run = _Run(cfg, exp, observer, scale, seed, url)
        cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        interrupted = run.run()
        wall, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    st = run.stats
    s = Summary(cfg.slug, cfg.observer, seed, base or f"{url} (started by this command)", scale,
                participants=st.entered, completed=st.completed, no_trials=st.no_trials, created=st.created,
                replays=st.replays, rejected=st.rejected, retries=st.retries, reloads=st.reloads,
                rate_limited=st.rate_limited, failures=st.failures, interrupted=interrupted)
    s.wall_s = wall
    s.cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    _audit(s, st)
    if run.abort:
        done = "nothing judged" if not s.stored else f"{s.stored} judgments stored before it stopped"
        raise SimulationError(f"{run.abort}; {done}")
    _qc(s, exp)
    if cfg.agreement_curve:
        _curve(s, exp)
    return s
