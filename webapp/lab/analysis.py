"""Numbers for the dashboard: progress, coverage, win rates, agreement, metric 2AFC (JOD scales: ``scaling``).

All functions read the database with aggregate queries (a row per trial, or per trial and choice), so memory
and Python time grow with the number of trials / stimuli, never with the number of judgments; the ones that
share inputs take them as optional arguments (``counts``, ``choices``, ``stim``) so that a page computes each
once (``summary``). Only *normal* trials count (no practice,
no sentinel); planned repeats count as further judgments of the same trial. ``exclude`` is a set of
participant pks to leave out (e.g. the QC-flagged ones).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from django.db.models import Count, F, Max, Min, Q
from django.db.models.functions import TruncHour, TruncMinute

from learning import twoafc
from webapp.crowd.models import Assignment, Judgment, Participant
from webapp.experiments.models import Trial
from webapp.stimuli.models import Stimulus


def _judgments(experiment, exclude: set[int] | None = None, normal_only: bool = True):
    qs = Judgment.objects.filter(trial__experiment=experiment).exclude(item__is_practice=True)
    qs = qs.filter(trial__kind="normal") if normal_only else qs.exclude(trial__kind="practice")
    if exclude:
        qs = qs.exclude(assignment__participant_id__in=exclude)
    return qs


def choice_counts(experiment, exclude: set[int] | None = None) -> dict[tuple[int, int], int]:
    """``{(trial pk, chosen stimulus pk): n judgments}`` over normal trials: one GROUP BY, a row per trial
    and choice, whatever the number of judgments."""
    rows = (_judgments(experiment, exclude).values("trial_id", "chosen_id").annotate(n=Count("id"))
            .order_by("trial_id", "chosen_id").values_list("trial_id", "chosen_id", "n"))
    return {(t, c): n for t, c, n in rows}


def trial_counts(experiment, exclude: set[int] | None = None,
                 choices: dict[tuple[int, int], int] | None = None) -> dict[int, tuple[int, int]]:
    """``{trial pk: (n judgments, n choosing stimulus_b = p1)}`` over normal trials with ≥1 judgment; from
    ``choices`` (``choice_counts``) when given, else by one aggregate query."""
    if choices is not None:
        b_of = dict(Trial.objects.filter(id__in={t for t, _ in choices}).values_list("id", "stimulus_b_id"))
        out: dict[int, tuple[int, int]] = {}
        for (tid, chosen), n in sorted(choices.items()):
            total, nb = out.get(tid, (0, 0))
            out[tid] = (total + n, nb + (n if chosen == b_of[tid] else 0))
        return out
    rows = (
        _judgments(experiment, exclude)
        .values("trial_id")
        .annotate(n=Count("id"), nb=Count("id", filter=Q(chosen_id=F("trial__stimulus_b_id"))))
        .order_by("trial_id")
    )
    return {r["trial_id"]: (r["n"], r["nb"]) for r in rows}


def progress(experiment, counts: dict[int, tuple[int, int]] | None = None) -> dict:
    """Collected judgments against the target (each trial capped at its target), plus participant counts;
    ``counts``: ``trial_counts(experiment)`` if already at hand."""
    counts = trial_counts(experiment) if counts is None else counts
    target = collected = trials = 0
    for tid, tgt in Trial.objects.filter(experiment=experiment, kind="normal").values_list(
        "id", "target_judgments"
    ):
        trials += 1
        tgt = tgt or experiment.judgments_per_trial or 0
        target += tgt
        collected += min(counts.get(tid, (0, 0))[0], tgt)
    assignments = Assignment.objects.filter(experiment=experiment)
    return {
        "trials": trials,
        "target_judgments": target,
        "collected_judgments": collected,
        "judgments": sum(n for n, _ in counts.values()),
        "fraction": (collected / target) if target else 0.0,
        "participants": Participant.objects.filter(experiment=experiment).count(),
        "assignments_completed": assignments.filter(state="completed").count(),
        "assignments_active": assignments.filter(state="active").count(),
    }


def coverage(experiment, exclude: set[int] | None = None,
             counts: dict[int, tuple[int, int]] | None = None) -> list[dict]:
    """Per normal trial: judgments collected and the target (``counts``: ``trial_counts`` if at hand)."""
    counts = trial_counts(experiment, exclude) if counts is None else counts
    return [
        {"trial": tid, "n": counts.get(tid, (0, 0))[0], "target": tgt or experiment.judgments_per_trial}
        for tid, tgt in Trial.objects.filter(experiment=experiment, kind="normal")
        .order_by("id")
        .values_list("id", "target_judgments")
    ]


def judgments_over_time(experiment) -> list[tuple]:
    """``[(bucket start, judgments in bucket)]``, by minute when the data spans < 3 hours, else by hour."""
    qs = _judgments(experiment, normal_only=False)
    span = qs.aggregate(first=Min("created"), last=Max("created"))
    if span["first"] is None:
        return []
    trunc = TruncMinute if (span["last"] - span["first"]).total_seconds() < 3 * 3600 else TruncHour
    rows = qs.annotate(b=trunc("created")).values("b").annotate(n=Count("id")).order_by("b")
    return [(r["b"], r["n"]) for r in rows]


def setting_label(codec: str, quality, target_bpp) -> str:
    """Human label of a codec setting, e.g. ``jpeg q=30`` or ``avif @0.25bpp``."""
    if codec == "original":
        return "original"
    if quality is not None:
        q = int(quality) if float(quality).is_integer() else quality
        return f"{codec} q={q}"
    if target_bpp is not None:
        return f"{codec} @{target_bpp:g}bpp"
    return codec


def _stimulus_table(experiment) -> dict[int, dict]:
    """Facts of every stimulus used by the experiment's normal trials, keyed by stimulus pk."""
    ids = set()
    for a, b in Trial.objects.filter(experiment=experiment, kind="normal").values_list(
        "stimulus_a_id", "stimulus_b_id"
    ):
        ids.update((a, b))
    fields = ("id", "public_id", "codec", "codec_version", "quality", "target_bpp", "bpp", "psnr", "ssim")
    return {r["id"]: r for r in Stimulus.objects.filter(id__in=ids).values(*fields)}


def win_rates(experiment, exclude: set[int] | None = None,
              choices: dict[tuple[int, int], int] | None = None,
              stim: dict[int, dict] | None = None) -> list[dict]:
    """Per codec×setting: how often a stimulus of it was chosen when shown (wins / appearances).

    From the judgments counted per trial and choice (``choices``: ``choice_counts`` if at hand; ``stim``:
    ``_stimulus_table``), so its cost does not grow with the number of judgments."""
    stim = _stimulus_table(experiment) if stim is None else stim
    choices = choice_counts(experiment, exclude) if choices is None else choices
    pair = {t: (a, b) for t, a, b in Trial.objects.filter(id__in={t for t, _ in choices})
            .values_list("id", "stimulus_a_id", "stimulus_b_id")}
    wins: dict[tuple, int] = defaultdict(int)
    shown: dict[tuple, int] = defaultdict(int)
    bpps: dict[tuple, list[float]] = defaultdict(list)
    key = {s: (r["codec"], r["quality"], r["target_bpp"]) for s, r in stim.items()}
    for s, r in stim.items():
        bpps[key[s]].append(r["bpp"] or 0.0)
    for (tid, chosen), n in choices.items():
        a, b = pair[tid]
        shown[key[a]] += n
        shown[key[b]] += n
        wins[key[chosen]] += n
    out = []
    for k in sorted(shown, key=lambda k: (k[0], float(np.mean(bpps[k])))):
        out.append(
            {
                "codec": k[0],
                "quality": k[1],
                "target_bpp": k[2],
                "label": setting_label(*k),
                "mean_bpp": float(np.mean(bpps[k])),
                "wins": wins[k],
                "shown": shown[k],
                "win_rate": wins[k] / shown[k],
            }
        )
    return out


@dataclass
class Agreement:
    trials: int
    majority_agreement: float | None
    pairwise_agreement: float | None
    split_half: float | None


def agreement(experiment, exclude: set[int] | None = None, seed: int = 0,
              counts: dict[int, tuple[int, int]] | None = None) -> Agreement:
    """Agreement between judges over normal trials with ≥2 judgments.

    - majority agreement: mean share of a trial's judges who chose the majority stimulus;
    - pairwise agreement: probability that two different judges of a trial agree (unbiased,
      k(k-1)+(n-k)(n-k-1) over n(n-1)); this is the human 2AFC ceiling;
    - split half: judges of each trial split at random in two halves; 2AFC score of half 1's
      majority at predicting half 2's fraction (ties score 0.5).

    ``counts``: ``trial_counts(experiment, exclude)`` if already at hand.
    """
    rng = np.random.default_rng(seed)
    maj, nk, split = [], [], []
    counts = trial_counts(experiment, exclude) if counts is None else counts
    for n, k in counts.values():
        if n < 2:
            continue
        maj.append(max(k, n - k) / n)
        nk.append((n, k))
        votes = rng.permutation(np.r_[np.ones(k), np.zeros(n - k)])
        h1, h2 = votes[: n // 2].mean(), votes[n // 2 :].mean()
        # half 1's majority as the "metric" (distance 0 to its choice) scored against half 2's fraction
        split.append(twoafc.score(float(h1 > 0.5), float(h1 < 0.5), h2))
    n_, k_ = np.array(nk, dtype=float).reshape(-1, 2).T
    pair = twoafc.human_ceiling(k_ / np.maximum(n_, 1), n_)

    def mean(v) -> float | None:
        return float(np.mean(v)) if len(v) else None

    return Agreement(len(maj), mean(maj), mean(pair), mean(split))


def metric_agreement(experiment, exclude: set[int] | None = None,
                     counts: dict[int, tuple[int, int]] | None = None, stim: dict[int, dict] | None = None,
                     ag: Agreement | None = None) -> dict:
    """Mean 2AFC score of PSNR and SSIM (higher = closer / better) on the normal trials with judgments.

    Also returns the human ceiling (pairwise agreement) on the same trials for comparison. ``counts``
    (``trial_counts``), ``stim`` (``_stimulus_table``) and ``ag`` (``agreement``): if already at hand.
    """
    counts = trial_counts(experiment, exclude) if counts is None else counts
    stim = _stimulus_table(experiment) if stim is None else stim
    rows: dict[str, list[tuple[float, float, float]]] = {"psnr": [], "ssim": []}  # (d0, d1, h)
    for tid, a, b in Trial.objects.filter(id__in=counts).values_list("id", "stimulus_a_id", "stimulus_b_id"):
        n, k = counts[tid]
        for m in rows:
            va, vb = stim[a][m], stim[b][m]
            if va is None or vb is None or (isinstance(va, float) and math.isnan(va)):
                continue
            # higher = closer, so the distance is minus the metric; PSNR of identical images is inf
            rows[m].append((-min(va, 1e6), -min(vb, 1e6), k / n))
    ag = agreement(experiment, exclude, counts=counts) if ag is None else ag
    return {
        "trials": len(counts),
        **{m: twoafc.score(*np.array(r).T) if r else None for m, r in rows.items()},
        "human_ceiling": ag.pairwise_agreement,
    }
