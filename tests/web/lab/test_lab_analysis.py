"""Dashboard numbers: trial counts, win rates, agreement, metric 2AFC."""

import numpy as np
import pytest
from lab_factories import ALL, WITHOUT_BAD

from learning import twoafc
from webapp.lab import analysis


@pytest.mark.django_db
def test_trial_counts_by_hand(judged):
    w = judged["world"]
    counts = analysis.trial_counts(w.exp)
    assert [counts[t.pk] for t in w.normal] == ALL
    counts = analysis.trial_counts(w.exp, exclude={judged["bad"].pk})
    assert [counts[t.pk] for t in w.normal] == WITHOUT_BAD


@pytest.mark.django_db
def test_progress_and_coverage(judged):
    w = judged["world"]
    p = analysis.progress(w.exp)
    assert p["trials"] == 6 and p["target_judgments"] == 18
    assert p["judgments"] == 16
    assert p["collected_judgments"] == 3 + 3 + 2 + 2 + 1 + 2  # capped at target 3
    assert p["participants"] == 3
    cov = analysis.coverage(w.exp)
    assert [c["n"] for c in cov] == [n for n, _ in ALL]


@pytest.mark.django_db
def test_win_rates_by_hand(judged):
    rows = {r["label"]: r for r in analysis.win_rates(judged["world"].exp)}
    # trials (jpeg10, jpeg50), (jpeg10, webp30), (jpeg50, webp30) on both refs; ALL gives b-choices
    # jpeg10 shown in trials 0,1,3,4: 5+4+2+1 = 12, chosen as a: 4+2+1+1 = 8
    assert rows["jpeg q=10"]["shown"] == 12 and rows["jpeg q=10"]["wins"] == 8
    # jpeg50: trials 0,2,3,5: 5+2+2+2 = 11; chosen as b in 0,3: 1+1, as a in 2,5: 0+1 -> 3
    assert rows["jpeg q=50"]["shown"] == 11 and rows["jpeg q=50"]["wins"] == 3
    # webp30: trials 1,2,4,5: 4+2+1+2 = 9; chosen as b: 2+2+0+1 = 5
    assert rows["webp q=30"]["shown"] == 9 and rows["webp q=30"]["wins"] == 5
    assert rows["webp q=30"]["win_rate"] == pytest.approx(5 / 9)
    assert sum(r["wins"] for r in rows.values()) == 16


@pytest.mark.django_db
def test_agreement_by_hand(judged):
    ag = analysis.agreement(judged["world"].exp)
    multi = [(n, k) for n, k in ALL if n >= 2]
    assert ag.trials == len(multi) == 5
    assert ag.majority_agreement == pytest.approx(np.mean([max(k, n - k) / n for n, k in multi]))
    # trial 0: n=5,k=1 -> (0 + 4*3)/20 = 0.6; trial 1: n=4,k=2 -> (2 + 2)/12; trial 2: 1; trials 3,5: 0
    assert ag.pairwise_agreement == pytest.approx(np.mean([0.6, 1 / 3, 1.0, 0.0, 0.0]))
    assert 0 <= ag.split_half <= 1


def test_two_afc_score_is_learning_twoafc():  # the dashboard scores with learning.twoafc, not a copy
    assert twoafc.score(0.1, 0.2, 0.25) == 0.75
    assert twoafc.score(0.3, 0.2, 0.25) == 0.25
    assert twoafc.score(0.2, 0.2, 0.9) == 0.5
    assert analysis.twoafc is twoafc


@pytest.mark.django_db
def test_metric_agreement_by_hand(judged):
    # PSNR: jpeg10 = 25, jpeg50 = 45, webp30 = 43 -> higher PSNR = smaller distance
    ma = analysis.metric_agreement(judged["world"].exp)
    h = [k / n for n, k in ALL]
    # trial (jpeg10, jpeg50): b closer -> score h; (jpeg10, webp30): b closer -> h; (jpeg50, webp30): a closer
    expected = np.mean([h[0], h[1], 1 - h[2], h[3], h[4], 1 - h[5]])
    assert ma["psnr"] == pytest.approx(expected)
    assert ma["trials"] == 6
