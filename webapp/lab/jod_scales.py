"""JOD scales of an experiment (``learning.scaling`` on its judgments): per codec×setting and per stimulus.

How the judgments enter the scale: each normal judgment (planned repeats included, practice and sentinels
left out) is one paired comparison in which the chosen stimulus is preferred. In a pair study that is the
question itself ("which looks better"). In a triplet study the question is "which is closer to the
reference": both stimuli are distortions of the same reference shown beside them, so the closer one is the
less impaired, i.e. the better one in the full-reference sense, and the judgment counts as a preference
for it (pwcmp treats full-reference comparisons the same way). Distances of the two stimuli to each other
(a third comparison a triplet could imply) are not modelled.

Per codec×setting, the conditions are the settings (codec, quality or target bpp) pooled over reference
images: a judgment between two stimuli of one reference is a comparison of their two settings, so the
scale averages over content and links settings through every reference. Per stimulus, each reference's
stimuli are scaled on their own (trials never compare stimuli of different references, so their scales
share no zero); each reference's scale has mean 0.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
from django.db.models import Count

from learning.scaling import ScalingError, comparisons, fit_comparisons
from learning.scaling.plan import plan
from webapp.experiments.models import Trial
from webapp.lab.analysis import _judgments, _stimulus_table, setting_label
from webapp.stimuli.models import Stimulus

DASHBOARD_BOOT = 500
EXPORT_BOOT = 1000
TRIPLET_RULE = ("a judgment prefers the chosen stimulus; in triplet studies the stimulus judged closer to "
                "the reference is the preferred (less impaired) one")


def judgment_rows(experiment, exclude: set[int] | None = None) -> list[tuple[int, int, int, int, int]]:
    """``(participant, stimulus_a, stimulus_b, chosen, n)``: the normal judgments (repeats included)
    counted per participant, trial and choice by the database, so memory grows with participants × trials
    judged, not with judgments."""
    fields = ("assignment__participant_id", "trial__stimulus_a_id", "trial__stimulus_b_id", "chosen_id")
    qs = (_judgments(experiment, exclude).values(*fields).annotate(n=Count("id")).order_by(*fields)
          .values_list(*fields, "n"))
    return list(qs.iterator(chunk_size=5000))


def _key(r: dict) -> tuple:
    return (r["codec"], r["quality"], r["target_bpp"])


def setting_scale(experiment, exclude: set[int] | None = None, n_boot: int = DASHBOARD_BOOT, seed: int = 0,
                  rows: list | None = None):
    """``(Scale over codec×setting keys, stimulus table)``; raises ScalingError for unusable data.

    With ``rows`` (``judgment_rows``) the comparisons keep who made them; without, they are counted by the
    database per trial and choice (``_pooled_comparisons``): the same scale and posterior interval (which
    depend on the pooled wins and the number of participants only), at a cost that does not grow with the
    number of judgments."""
    stim = _stimulus_table(experiment)
    conditions = sorted({_key(r) for r in stim.values()}, key=_sort_key)
    if rows is None:
        comp = _pooled_comparisons(experiment, exclude, stim, conditions)
    else:
        keyed = [(p, _key(stim[a]), _key(stim[b]), _key(stim[c]), n) for p, a, b, c, n in rows]
        comp = comparisons(keyed, conditions=conditions)
    comp = _relabel(comp)
    return fit_comparisons(comp, n_boot=n_boot, seed=seed, interval="posterior"), stim


def _pooled_comparisons(experiment, exclude: set[int] | None, stim: dict[int, dict], conditions: list):
    """``Comparisons`` over codec×setting keys pooled over participants: a row per (winner, loser) with its
    judgments, all attributed to the first participant, and ``participants`` listing everyone who judged.
    Only for the posterior interval (``fit_comparisons(interval="posterior")``), which reads the pooled wins
    and the number of participants; a bootstrap over participants needs ``judgment_rows``. Two aggregate
    queries."""
    fields = ("trial__stimulus_a_id", "trial__stimulus_b_id", "chosen_id")
    qs = _judgments(experiment, exclude)
    counted = qs.values(*fields).annotate(n=Count("id")).order_by(*fields).values_list(*fields, "n")
    participants = sorted(qs.values_list("assignment__participant_id", flat=True).distinct().order_by())
    keyed = [(0, _key(stim[a]), _key(stim[b]), _key(stim[c]), n) for a, b, c, n in counted]
    comp = comparisons(keyed, conditions=conditions)
    return replace(comp, participants=participants)


def _sort_key(k: tuple) -> tuple:
    return (k[0], k[1] if k[1] is not None else -1.0, k[2] if k[2] is not None else -1.0)


def _relabel(comp):
    """Conditions as readable labels (``jpeg q=30``) for the error messages and tables."""
    return replace(comp, conditions=[setting_label(*k) for k in comp.conditions])


def per_setting(experiment, exclude: set[int] | None = None, n_boot: int = DASHBOARD_BOOT,
                seed: int = 0, rows: list | None = None) -> dict:
    """``{"rows": [...], "error": str | None, "scale": Scale | None}``: JOD per codec×setting with its
    interval, mean bpp over the references, and judgments; ``error`` says why there is no scale."""
    try:
        scale, stim = setting_scale(experiment, exclude, n_boot, seed, rows)
    except ScalingError as exc:
        return {"rows": [], "error": str(exc), "scale": None}
    bpps: dict[str, list[float]] = defaultdict(list)
    facts: dict[str, tuple] = {}
    for r in stim.values():
        label = setting_label(*_key(r))
        bpps[label].append(r["bpp"] or 0.0)
        facts[label] = _key(r)
    out = []
    for row in scale.rows():
        codec, quality, target = facts[row["condition"]]
        out.append({"codec": codec, "quality": quality, "target_bpp": target, "label": row["condition"],
                    "mean_bpp": float(np.mean(bpps[row["condition"]])), "jod": row["jod"],
                    "ci_low": row["ci_low"], "ci_high": row["ci_high"], "judgments": row["judgments"]})
    out.sort(key=lambda r: (r["codec"], r["mean_bpp"]))
    return {"rows": out, "error": None, "scale": scale}


def per_stimulus(experiment, exclude: set[int] | None = None, n_boot: int = EXPORT_BOOT, seed: int = 0,
                 rows: list | None = None) -> dict:
    """``{"rows": [...], "errors": [...]}``: JOD per stimulus, each reference scaled on its own."""
    stim = _stimulus_table(experiment)
    ref_of = dict(Stimulus.objects.filter(id__in=stim).values_list("id", "reference__sha256"))
    rows = judgment_rows(experiment, exclude) if rows is None else rows
    by_ref: dict[str, list] = defaultdict(list)
    for r in rows:
        by_ref[ref_of[r[1]]].append(r)
    refs = sorted(set(Trial.objects.filter(experiment=experiment, kind="normal")
                      .values_list("reference__sha256", flat=True)))
    out, errors = [], []
    pid = {s: str(r["public_id"]) for s, r in stim.items()}
    by_pid = {v: s for s, v in pid.items()}
    for sha in refs:
        conds = [pid[s] for s in sorted(s for s in stim if ref_of[s] == sha)]
        named = [(p, pid[a], pid[b], pid[c], n) for p, a, b, c, n in by_ref[sha]]
        try:
            scale = fit_comparisons(comparisons(named, conditions=conds), n_boot=n_boot, seed=seed)
        except ScalingError as exc:
            errors.append(f"reference {sha[:12]}: {exc}")
            continue
        for row in scale.rows():
            r = stim[by_pid[row["condition"]]]
            out.append({"reference_sha256": sha, "stimulus": str(r["public_id"]),
                        "label": setting_label(*_key(r)), "bpp": r["bpp"], "jod": row["jod"],
                        "ci_low": row["ci_low"], "ci_high": row["ci_high"], "judgments": row["judgments"]})
    return {"rows": out, "errors": errors}


def study_plan(experiment, ci_width: float, exclude: set[int] | None = None,
               n_boot: int = DASHBOARD_BOOT) -> dict:
    """``{"plan": Plan | None, "error": str | None}`` for the per-setting scale at ``ci_width`` JOD."""
    res = per_setting(experiment, exclude, n_boot)
    if res["scale"] is None:
        return {"plan": None, "error": res["error"]}
    return {"plan": plan(res["scale"], ci_width), "error": None}
