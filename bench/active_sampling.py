"""Balanced vs active sampling on a simulated observer with a known JOD scale (issue 18).

Each simulated participant judges ``--per`` pairs (never the same pair twice) of ``--conditions``
conditions whose true scale is drawn uniformly over ``--span`` JOD; answers follow the Thurstone Case V
model (P = Φ(Δ/σ), 1 JOD = 75 %) from one answer stream per seed. Balanced: the least-judged pairs first
(random tie-break), as the site's balanced mode (least-held trials over all pairs of stimuli). Active
(``active:CRITERION:STRATEGY``): ``learning.scaling.design.next_batch`` from the posterior after every
participant; ``active:variance:mst`` is the site's design. ``oracle:…``: the same design told the true
scale (a bound for any active design). After each participant the MAP scale is compared with the truth
(both mean 0). Reported: "settled", the judgments from which RMSE ≤ 0.3 JOD and Spearman ≥ 0.95 held for
good (checked for 50 % more judgments, at least 20 participants), and "first", the first crossing (a
noisy design crosses early by chance). Coverage at the settled point: share of conditions whose true
value lies in the site's 95 % interval (posterior under the hierarchical prior,
``learning.scaling.posterior``), in the percentile bootstrap over participants and in the Laplace
interval, both under the weak N(0, 10²) prior (the intervals before session 9).

    python -m bench.active_sampling --seeds 10 --conditions 20,30,40 --span 6,12
    python -m bench.active_sampling --bound --seeds 10      # A-optimal allocation / all pairs equally
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import ndtr
from scipy.stats import spearmanr

from learning.scaling import comparisons, design, fit_comparisons, thurstone
from learning.scaling.design import next_batch


def scale_wins(rows: list[tuple], n: int) -> np.ndarray:
    """``wins[i, j]``: times i was chosen over j in ``rows`` (participant, i, j, chosen)."""
    wins = np.zeros((n, n))
    for _, i, j, win in rows:
        wins[win, j if win == i else i] += 1
    return wins


def run(n: int, span: float, per: int, seed: int, mode: str, rmse_target: float, rho_target: float,
        max_judgments: int, n_boot: int, hold: float = 0.5) -> dict:
    """One simulated study; stops once the accuracy target has held for ``hold`` × the judgments at which
    it last started to hold (and at least 20 participants)."""
    rng = np.random.default_rng(seed)
    truth = np.sort(rng.uniform(0, span, n))
    truth -= truth.mean()
    answers = np.random.default_rng([seed, 1])  # the same observer stream whatever the design asks
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
    counts = np.zeros(len(pairs))
    wins = np.zeros((n, n))
    rows: list[tuple] = []
    mu = q = None
    choose_t = 0.0
    p = 0
    first = streak = None
    while len(rows) < max_judgments:
        t0 = time.perf_counter()
        if mode == "balanced":
            batch = list(np.lexsort((rng.random(len(pairs)), counts))[:per])
        elif mode.startswith("oracle"):  # the design knows the true scale: a bound for any active design
            _, criterion, strategy = mode.split(":")
            prec = design.add_information(np.eye(n) / thurstone.PRIOR_SD**2, truth, pairs, counts)
            batch = design.choose(truth, prec, pairs, per, rng=rng, criterion=criterion, strategy=strategy)
        else:
            _, criterion, strategy = mode.split(":")
            batch, mu = next_batch(wins, pairs, per, init=mu, rng=rng, criterion=criterion,
                                   strategy=strategy)
        choose_t += time.perf_counter() - t0
        for k in batch:
            i, j = pairs[k]
            win = i if answers.random() < ndtr((truth[i] - truth[j]) / thurstone.SIGMA) else j
            lose = j if win == i else i
            wins[win, lose] += 1
            counts[k] += 1
            rows.append((p, int(i), int(j), int(win)))
        p += 1
        q = thurstone.fit(wins, init=q)
        rmse = float(np.sqrt(np.mean((q - truth) ** 2)))
        rho = float(spearmanr(q, truth)[0])
        if rmse <= rmse_target and rho >= rho_target:
            first = first or len(rows)
            streak = streak or len(rows)
            if len(rows) >= streak + max(20 * per, hold * streak):
                break
        else:
            streak = None
    settled = streak or len(rows)
    inside = inside_boot = inside_laplace = np.zeros(n, bool)
    width = float("nan")
    if n_boot:  # intervals at the point where the target was met for good
        comp = comparisons(rows[:settled], conditions=list(range(n)))
        scale = fit_comparisons(comp, n_boot=n_boot, seed=seed)  # the site's interval
        inside = (scale.ci_low <= truth) & (truth <= scale.ci_high)
        width = float(np.median(scale.ci_high - scale.ci_low))
        old = fit_comparisons(comp, n_boot=n_boot, seed=seed, prior_sd=thurstone.PRIOR_SD,
                              interval="bootstrap")
        inside_boot = (old.ci_low <= truth) & (truth <= old.ci_high)
        # the Laplace interval (posterior sd of the mean-0 scale) under the weak prior, for comparison
        c = np.eye(n) - 1.0 / n
        cov = design.covariance(thurstone.hessian(old.jod, scale_wins(rows[:settled], n)))
        sd = np.sqrt(np.diag(c @ cov @ c))
        inside_laplace = np.abs(old.jod - truth) <= 1.959964 * sd
    return {"span": span, "mode": mode, "seed": seed, "n": n, "judgments": settled,
            "first_crossing": first or len(rows), "participants": p, "reached": streak is not None,
            "inside": int(inside.sum()), "inside_boot": int(inside_boot.sum()),
            "inside_laplace": int(inside_laplace.sum()), "conditions": n,
            "median_ci_width": width,
            "choose_ms_per_participant": 1000 * choose_t / p}


def bound(n: int, span: float, seed: int, iters: int = 2000) -> float:
    """The best any design could do, knowing the true scale: judgments needed by the A-optimal allocation
    (continuous weights over all pairs, multiplicative algorithm) over those of equal weights on all pairs,
    both for the same expected squared error tr Σ (Fisher information at the truth)."""
    truth = np.sort(np.random.default_rng(seed).uniform(0, span, n))
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
    a = np.zeros((len(pairs), n))
    a[np.arange(len(pairs)), pairs[:, 0]], a[np.arange(len(pairs)), pairs[:, 1]] = 1, -1
    info = design.fisher_information(truth[pairs[:, 0]] - truth[pairs[:, 1]])

    def trace(w: np.ndarray) -> tuple[float, np.ndarray]:
        cov = design.covariance((a.T * (w * info)) @ a + 1.0 / n)  # + J/n pins the unmeasured mean
        return float(np.trace(cov)) - 1.0, cov

    w = np.full(len(pairs), 1.0 / len(pairs))
    uniform = trace(w)[0]
    for _ in range(iters):
        cov = trace(w)[1]
        g = info * ((a @ cov) ** 2).sum(1)  # −∂ tr / ∂w
        w = w * np.sqrt(g / (w @ g))
        w /= w.sum()
    return trace(w)[0] / uniform


def summary(results: list[dict]) -> None:
    """Per span and condition count: judgments to the target (settled and first crossing) per mode, and
    each mode's ratio to the first mode (balanced)."""
    print(f"{'span':>4} {'n':>3} {'mode':>22} {'settled':>7} {'IQR':>11} {'min–max':>11} {'first':>6} "
          f"{'reached':>7} {'coverage':>8} {'per seed':>14} {'boot':>5} {'Laplace':>7} {'choose ms':>9}")
    modes = list(dict.fromkeys(r["mode"] for r in results))
    for span, n in sorted({(r["span"], r["n"]) for r in results}):
        sel = [r for r in results if r["n"] == n and r["span"] == span]
        med = {}
        for mode in modes:
            rs = [r for r in sel if r["mode"] == mode]
            if not rs:
                continue
            j = np.array([r["judgments"] for r in rs])
            q1, q3 = np.percentile(j, [25, 75])
            cov = sum(r["inside"] for r in rs) / sum(r["conditions"] for r in rs)
            per_seed = np.array([r["inside"] / r["conditions"] for r in rs])
            boot = sum(r.get("inside_boot", 0) for r in rs) / sum(r["conditions"] for r in rs)
            lap = sum(r.get("inside_laplace", 0) for r in rs) / sum(r["conditions"] for r in rs)
            med[mode] = (np.median(j), np.median([r["first_crossing"] for r in rs]))
            seeds_s = f"{np.median(per_seed):.2f} {per_seed.min():.2f}–{per_seed.max():.2f}"
            shown = np.isfinite(rs[0]["median_ci_width"])
            cov_s = (f"{cov:8.3f} {seeds_s:>14} {boot:5.3f} {lap:7.3f}" if shown
                     else f"{'—':>8} {'—':>14} {'—':>5} {'—':>7}")
            print(f"{span:>4g} {n:>3} {mode:>22} {med[mode][0]:>7.0f} {q1:>5.0f}–{q3:<5.0f} "
                  f"{j.min():>5}–{j.max():<5} {med[mode][1]:>6.0f} "
                  f"{sum(r['reached'] for r in rs):>4}/{len(rs):<2} "
                  f"{cov_s} {np.mean([r['choose_ms_per_participant'] for r in rs]):>9.2f}")
        for mode in modes[1:]:
            if mode not in med:
                continue
            ratios = []
            for s in {r["seed"] for r in sel}:
                b = next(r for r in sel if r["seed"] == s and r["mode"] == modes[0])
                a = next(r for r in sel if r["seed"] == s and r["mode"] == mode)
                ratios.append(a["judgments"] / b["judgments"])
            print(f"          {mode} / {modes[0]}: settled {med[mode][0] / med[modes[0]][0]:.2f} (per seed "
                  f"{np.median(ratios):.2f}, {min(ratios):.2f}–{max(ratios):.2f}), first crossing "
                  f"{med[mode][1] / med[modes[0]][1]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conditions", default="20,30,40")
    ap.add_argument("--span", default="6,12", help="true scale ranges in JOD (comma-separated)")
    ap.add_argument("--per", type=int, default=10, help="judgments per participant")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed … first-seed + seeds − 1")
    ap.add_argument("--rmse", type=float, default=0.3)
    ap.add_argument("--spearman", type=float, default=0.95)
    ap.add_argument("--max-judgments", type=int, default=60000)
    ap.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples for coverage (0: none)")
    ap.add_argument("--boot-modes", default="balanced,active:variance:mst",
                    help="modes whose coverage is measured (the bootstrap dominates the run time)")
    ap.add_argument("--modes", default="balanced,oracle:variance:mst,active:variance:mst,"
                    "active:variance:greedy,active:kl:mst,active:eig:mst",
                    help="balanced first, then active:CRITERION:STRATEGY (learning.scaling.design) or "
                    "oracle:CRITERION:STRATEGY (the design is told the true scale)")
    ap.add_argument("--json", type=Path, help="write every run's record here")
    ap.add_argument("--bound", action="store_true", help="only the A-optimal bound per span and n")
    args = ap.parse_args()
    if args.bound:
        for span in (float(x) for x in args.span.split(",")):
            for n in (int(x) for x in args.conditions.split(",")):
                b = [bound(n, span, seed) for seed in range(args.seeds)]
                print(f"span {span:g} JOD, {n} conditions: A-optimal / all pairs equally = median "
                      f"{np.median(b):.2f} (range {min(b):.2f}–{max(b):.2f}, {len(b)} scales)", flush=True)
        return
    results = []
    boot_modes = set(args.boot_modes.split(","))
    for span in (float(x) for x in args.span.split(",")):
        for n in (int(x) for x in args.conditions.split(",")):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for mode in args.modes.split(","):
                    r = run(n, span, args.per, seed, mode, args.rmse, args.spearman, args.max_judgments,
                            args.n_boot if mode in boot_modes else 0)
                    results.append(r)
                    print(json.dumps(r), file=sys.stderr, flush=True)
    print(f"true scale uniform over {args.span} JOD; {args.per} judgments per participant; target RMSE ≤ "
          f"{args.rmse} and Spearman ≥ {args.spearman}; {args.seeds} seeds; settled = judgments after which "
          "the target held for good (checked for 50 % more, ≥ 20 participants), first = first crossing")
    summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
