"""learning.scaling: the Thurstone JOD fit against closed forms, scipy and choix; bootstrap intervals;
errors for disconnected or too-thin data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import norm

from learning.scaling import DisconnectedError, ScalingError, preference, scale_pairs, thurstone
from learning.scaling.bradley_terry import bt_jod
from learning.scaling.data import comparisons


def _rows(pairs: dict[tuple[str, str], tuple[int, int]], participants: int = 4) -> list[tuple]:
    """``pairs[(a, b)] = (wins of a, wins of b)`` spread round-robin over ``participants``."""
    rows, k = [], 0
    for (a, b), (wa, wb) in pairs.items():
        for chosen in [a] * wa + [b] * wb:
            rows.append((f"p{k % participants}", a, b, chosen))
            k += 1
    return rows


def _simulate(q: np.ndarray, participants: int, per: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(participants):
        for _ in range(per):
            i, j = rng.choice(len(q), 2, replace=False)
            rows.append((p, int(i), int(j), int(i) if rng.random() < norm.cdf((q[i] - q[j]) / thurstone.SIGMA)
                         else int(j)))
    return rows


def test_unit_is_75_percent():
    assert thurstone.jod_to_prob(1.0) == pytest.approx(0.75, abs=1e-12)
    assert thurstone.prob_to_jod(0.75) == pytest.approx(1.0, abs=1e-12)
    assert thurstone.SIGMA == pytest.approx(1.482602218505602, rel=1e-12)


@pytest.mark.parametrize("wa,wb", [(30, 10), (25, 15), (12, 28), (20, 20)])
def test_two_conditions_match_inverse_probit(wa, wb):
    """Two conditions, flat prior: the MLE difference is σ·Φ⁻¹(share)."""
    s = scale_pairs(_rows({("A", "B"): (wa, wb)}), prior_sd=1e4, n_boot=50)
    d, lo, hi = s.difference("A", "B")
    assert d == pytest.approx(thurstone.SIGMA * norm.ppf(wa / (wa + wb)), abs=1e-6)
    assert lo - 1e-9 <= d <= hi + 1e-9


def test_tree_design_is_fitted_edge_by_edge():
    """A chain A–B–C: each edge's MLE is its own inverse probit (no cycle constrains it)."""
    s = scale_pairs(_rows({("A", "B"): (75, 25), ("B", "C"): (90, 10)}), prior_sd=1e4, n_boot=50)
    assert s.difference("A", "B")[0] == pytest.approx(1.0, abs=1e-6)  # 75 % = 1 JOD by definition
    assert s.difference("B", "C")[0] == pytest.approx(thurstone.SIGMA * norm.ppf(0.9), abs=1e-6)
    assert float(np.mean(s.jod)) == pytest.approx(0.0, abs=1e-9)


def test_newton_fit_equals_scipy_minimize():
    q_true = np.linspace(-2, 2, 8)
    c = comparisons(_simulate(q_true, 20, 30, seed=3))
    wins = c.wins()
    ours = thurstone.fit(wins, prior_sd=3.0)
    ref = minimize(thurstone.neg_log_posterior, np.zeros(len(q_true)), args=(wins, 3.0), method="BFGS",
                   options={"gtol": 1e-10}).x
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_unanimous_pair_stays_finite():
    s = scale_pairs(_rows({("A", "B"): (20, 0), ("B", "C"): (10, 10)}), n_boot=50)
    assert np.all(np.isfinite(s.jod)) and np.all(np.isfinite(s.ci_high))
    assert 1.5 < s.difference("A", "B")[0] < 10


def test_bradley_terry_choix_matches_closed_form_and_thurstone():
    # two players: the BT MLE is log(wa / wb), in JOD / ln 3
    wins = np.zeros((2, 2))
    wins[0, 1], wins[1, 0] = 30, 10
    bt = bt_jod(wins, alpha=1e-9)
    assert bt[0] - bt[1] == pytest.approx(math.log(3) / math.log(3), abs=1e-4)  # 30:10 is 75 %: 1 JOD
    # many conditions: choix's BT and our Thurstone give the same ordering and nearly the same values
    q_true = np.linspace(0, 5, 20)
    c = comparisons(_simulate(q_true, 40, 40, seed=1))
    ours = thurstone.fit(c.wins())
    theirs = bt_jod(c.wins())
    assert np.corrcoef(ours, theirs)[0, 1] > 0.995
    assert np.max(np.abs(ours - theirs)) < 0.4


def test_bootstrap_interval_covers_truth_and_is_repeatable():
    q_true = np.linspace(0, 4, 12)
    q_true -= q_true.mean()
    rows = _simulate(q_true, 40, 30, seed=7)
    s = scale_pairs(rows, n_boot=300, seed=11)
    assert np.all(s.ci_low <= s.jod) and np.all(s.jod <= s.ci_high)
    assert np.mean((s.ci_low <= q_true) & (q_true <= s.ci_high)) >= 0.75
    assert np.sqrt(np.mean((s.jod - q_true) ** 2)) < 0.4
    again = scale_pairs(rows, n_boot=300, seed=11)
    np.testing.assert_array_equal(s.ci_low, again.ci_low)
    # more participants, narrower intervals
    more = scale_pairs(_simulate(q_true, 160, 30, seed=8), n_boot=300)
    assert np.median(more.ci_high - more.ci_low) < 0.7 * np.median(s.ci_high - s.ci_low)


def test_anchor_gauge():
    s = scale_pairs(_rows({("A", "B"): (30, 10), ("B", "C"): (30, 10)}), anchor="C", n_boot=50)
    k = s.conditions.index("C")
    assert s.jod[k] == 0 and s.ci_low[k] == 0 and s.ci_high[k] == 0
    assert s.jod[s.conditions.index("A")] > s.jod[s.conditions.index("B")] > 0
    with pytest.raises(ScalingError, match="anchor"):
        scale_pairs(_rows({("A", "B"): (3, 1)}), anchor="Z", n_boot=50)


def test_disconnected_graph_names_the_conditions():
    rows = _rows({("A", "B"): (5, 5), ("B", "C"): (5, 5), ("X", "Y"): (3, 3)})
    with pytest.raises(DisconnectedError) as err:
        scale_pairs(rows)
    assert err.value.groups == [["A", "B", "C"], ["X", "Y"]]
    assert "X, Y" in str(err.value) and "not connected" in str(err.value)
    with pytest.raises(DisconnectedError, match="Z"):  # a listed condition never judged
        scale_pairs(_rows({("A", "B"): (5, 5)}), conditions=["A", "B", "Z"])


def test_too_few_judgments_or_participants():
    with pytest.raises(ScalingError, match="no judgments"):
        scale_pairs([])
    with pytest.raises(ScalingError, match="1 participant"):
        scale_pairs(_rows({("A", "B"): (5, 5)}, participants=1))
    with pytest.raises(ScalingError, match="neither"):
        scale_pairs([("p", "A", "B", "C")])


def test_direct_preference_with_participant_bootstrap():
    rows = _rows({("A", "B"): (30, 10), ("A", "C"): (1, 1)}, participants=8)
    pref = preference(rows, "A", "B", n_boot=500)
    assert pref.p == pytest.approx(0.75) and pref.judgments == 40 and pref.participants == 8
    assert pref.ci_low < 0.75 < pref.ci_high
    # the same data seen from B's side
    back = preference(rows, "B", "A", n_boot=500)
    assert back.p == pytest.approx(0.25)
    # unanimous participants: no spread between them, so the interval is a point
    same = preference([(p, "A", "B", "A") for p in range(5)], "A", "B", n_boot=100)
    assert same.ci_low == same.ci_high == 1.0
    with pytest.raises(ScalingError, match="1 participant"):
        preference([("p", "A", "B", "A")], "A", "B")


def test_counted_rows_equal_repeated_rows():
    rows = _rows({("A", "B"): (7, 3), ("B", "C"): (4, 6)}, participants=3)
    counted: dict[tuple, int] = {}
    for r in rows:
        counted[r] = counted.get(r, 0) + 1
    a = scale_pairs(rows, n_boot=100)
    b = scale_pairs([(*r, n) for r, n in counted.items()], n_boot=100)
    np.testing.assert_allclose(a.jod, b.jod)
    np.testing.assert_allclose(a.ci_low, b.ci_low)
    assert preference([(*r, n) for r, n in counted.items()], "A", "B").p == pytest.approx(0.7)
