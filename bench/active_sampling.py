"""Balanced vs active sampling on a simulated observer with a known JOD scale (issue 18).

Each simulated participant judges ``--per`` pairs (never the same pair twice) of ``--conditions``
conditions whose true scale is drawn uniformly over ``--span`` JOD; answers follow the Thurstone Case V
model (P = Φ(Δ/σ), 1 JOD = 75 %). Balanced: the least-judged pairs first (random tie-break), as the site's
balanced mode. Active: ``learning.scaling.design.next_batch`` (EIG, spanning-tree batch) from the posterior
after every participant. After each participant the MAP scale is compared with the truth (both mean 0):
the judgments needed until RMSE ≤ 0.3 JOD and Spearman ≥ 0.95 both hold. Coverage: the share of
conditions whose true value lies inside the 95 % bootstrap interval (over participants), at that point.

    python bench/active_sampling.py --seeds 10 --conditions 20,30,40
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learning.scaling import comparisons, fit_comparisons, thurstone  # noqa: E402
from learning.scaling.design import next_batch  # noqa: E402


def run(n: int, span: float, per: int, seed: int, mode: str, rmse_target: float, rho_target: float,
        max_judgments: int, n_boot: int) -> dict:
    rng = np.random.default_rng(seed)
    truth = np.sort(rng.uniform(0, span, n))
    truth -= truth.mean()
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
    counts = np.zeros(len(pairs))
    wins = np.zeros((n, n))
    rows: list[tuple] = []
    mu = None
    choose_t = 0.0
    p = 0
    while len(rows) < max_judgments:
        t0 = time.perf_counter()
        if mode == "balanced":
            batch = list(np.lexsort((rng.random(len(pairs)), counts))[:per])
        else:
            _, criterion, strategy = mode.split(":")
            batch, mu = next_batch(wins, pairs, per, init=mu, rng=rng, criterion=criterion,
                                   strategy=strategy)
        choose_t += time.perf_counter() - t0
        for k in batch:
            i, j = pairs[k]
            win = i if rng.random() < ndtr((truth[i] - truth[j]) / thurstone.SIGMA) else j
            lose = j if win == i else i
            wins[win, lose] += 1
            counts[k] += 1
            rows.append((p, int(i), int(j), int(win)))
        p += 1
        q = thurstone.fit(wins, init=mu)
        rmse = float(np.sqrt(np.mean((q - truth) ** 2)))
        rho = float(spearmanr(q, truth)[0])
        if rmse <= rmse_target and rho >= rho_target:
            break
    reached = rmse <= rmse_target and rho >= rho_target
    scale = fit_comparisons(comparisons(rows, conditions=list(range(n))), n_boot=n_boot, seed=seed)
    inside = (scale.ci_low <= truth) & (truth <= scale.ci_high)
    return {"mode": mode, "seed": seed, "n": n, "judgments": len(rows), "participants": p,
            "reached": bool(reached), "rmse": rmse, "spearman": rho, "inside": int(inside.sum()),
            "conditions": n, "median_ci_width": float(np.median(scale.ci_high - scale.ci_low)),
            "choose_ms_per_participant": 1000 * choose_t / p}


def summary(results: list[dict]) -> None:
    print(f"{'n':>3} {'mode':>22} {'median':>7} {'IQR':>13} {'min–max':>13} {'reached':>7} "
          f"{'coverage':>8} {'choose ms':>9}")
    modes = list(dict.fromkeys(r["mode"] for r in results))
    for n in sorted({r["n"] for r in results}):
        med = {}
        for mode in modes:
            rs = [r for r in results if r["n"] == n and r["mode"] == mode]
            j = np.array([r["judgments"] for r in rs])
            q1, q3 = np.percentile(j, [25, 75])
            cov = sum(r["inside"] for r in rs) / sum(r["conditions"] for r in rs)
            med[mode] = np.median(j)
            print(f"{n:>3} {mode:>22} {np.median(j):>7.0f} {q1:>6.0f}–{q3:<6.0f} {j.min():>6}–{j.max():<6} "
                  f"{sum(r['reached'] for r in rs):>4}/{len(rs):<2} {cov:>8.3f} "
                  f"{np.mean([r['choose_ms_per_participant'] for r in rs]):>9.2f}")
        for mode in modes[1:]:
            ratios = []
            for s in {r["seed"] for r in results if r["n"] == n}:
                b = next(r for r in results if r["n"] == n and r["seed"] == s and r["mode"] == modes[0])
                a = next(r for r in results if r["n"] == n and r["seed"] == s and r["mode"] == mode)
                ratios.append(a["judgments"] / b["judgments"])
            print(f"    {mode} / {modes[0]}: ratio of medians {med[mode] / med[modes[0]]:.2f}, per-seed "
                  f"ratio median {np.median(ratios):.2f} (range {min(ratios):.2f}–{max(ratios):.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conditions", default="20,30,40")
    ap.add_argument("--span", type=float, default=6.0, help="true scale range in JOD")
    ap.add_argument("--per", type=int, default=10, help="judgments per participant")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--rmse", type=float, default=0.3)
    ap.add_argument("--spearman", type=float, default=0.95)
    ap.add_argument("--max-judgments", type=int, default=60000)
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--modes", default="balanced,active:variance:greedy,active:variance:mst,active:eig:mst",
                    help="balanced first, then active:CRITERION:STRATEGY (learning.scaling.design)")
    ap.add_argument("--json", type=Path, help="write every run's record here")
    args = ap.parse_args()
    results = []
    for n in (int(x) for x in args.conditions.split(",")):
        for seed in range(args.seeds):
            for mode in args.modes.split(","):
                r = run(n, args.span, args.per, seed, mode, args.rmse, args.spearman, args.max_judgments,
                        args.n_boot)
                results.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
    print(f"true scale: uniform over {args.span:g} JOD; {args.per} judgments per participant; "
          f"stop at RMSE ≤ {args.rmse} and Spearman ≥ {args.spearman}; {args.seeds} seeds")
    summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
