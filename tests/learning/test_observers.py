"""learning.observers (metric → Thurstonian choice, lapses, RT) and learning.agreement (the k curve)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learning.agreement import judgments_needed, majority_agreement, pairwise_agreement
from learning.errors import LearningError
from learning.observers import DistanceCache, Observer, observer_metric, phi, spread


def _img(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_specs_resolve_through_the_registry_and_unknown_ones_are_one_line_errors(tmp_path):
    assert observer_metric("psnr").name == "psnr"
    with pytest.raises(LearningError, match=r"^unknown metric 'nope'"):
        observer_metric("nope")
    with pytest.raises(LearningError, match="weight file not found"):
        observer_metric(f"observer:{tmp_path / 'missing.pt'}")
    with pytest.raises(LearningError, match="needs a DPL weight file"):
        observer_metric("observer:")


def test_observer_file_is_a_dpl_with_given_weights(tmp_path):
    from learning.dpl import DPL, weightfile

    model = DPL("alex", backbone=None, seed=1)
    path = tmp_path / "obs.pt"
    weightfile.save_weights(model, path)
    cache = DistanceCache(observer_metric(f"observer:{path}"))
    ref = _img(0, 64)
    near = np.clip(ref.astype(int) + 3, 0, 255).astype(np.uint8)
    assert cache.distance(ref, ref) == pytest.approx(0.0, abs=1e-6)
    assert cache.distance(ref, near) < cache.distance(ref, _img(9, 64))


def test_psnr_distance_is_negated_and_cached_on_content():
    cache = DistanceCache(observer_metric("psnr"))
    ref = _img(1)
    noisy = np.clip(ref.astype(int) + np.random.default_rng(2).integers(-20, 21, ref.shape), 0, 255)
    slightly = np.clip(ref.astype(int) + np.random.default_rng(3).integers(-2, 3, ref.shape), 0, 255)
    d_noisy = cache.distance(ref, noisy.astype(np.uint8))
    d_slight = cache.distance(ref, slightly.astype(np.uint8))
    assert d_slight < d_noisy < 0  # PSNR is a similarity: its distance is -PSNR
    assert cache.distance(ref, ref) <= -100  # an exact copy: PSNR's cap
    assert len(cache._d) == 3 and cache.distance(ref.copy(), slightly.astype(np.uint8)) == d_slight


def test_unreadable_images_are_one_line_errors():
    cache = DistanceCache(observer_metric("ms-ssim"))
    with pytest.raises(LearningError, match=r"^ms-ssim needs a smaller image side") as e:
        cache.distance(_img(0), _img(1))
    assert "\n" not in str(e.value)
    with pytest.raises(LearningError, match="differs in size"):
        DistanceCache(observer_metric("psnr")).distance(_img(0, 32), _img(0, 16))


def test_thurstonian_choice_probability():
    obs = Observer(noise=0.5, scale=2.0)
    assert obs.p_choose_second(3.0, 1.0) == pytest.approx(phi(2.0 / 1.0))  # d0 > d1: p1 is closer
    assert obs.p_choose_second(1.0, 1.0) == 0.5
    assert obs.p_choose_second(-math.inf, -math.inf) == 0.5  # two exact copies
    assert obs.p_choose_second(0.0, -math.inf) == 1.0
    assert Observer(noise=0).p_choose_second(1.0, 1.1) == 0.0
    assert Observer(noise=0.5, lapse=0.5).p_choose_second_with_lapses(10.0, 0.0) == pytest.approx(0.75)
    for bad in ({"lapse": 1.5}, {"noise": -1}, {"rt_median_ms": 0}):
        with pytest.raises(LearningError):
            Observer(**bad)


def test_answers_follow_the_model_and_are_reproducible():
    n = 4000
    obs = Observer(noise=1.0, scale=1.0, rng=np.random.default_rng(0))
    answers = [obs.answer(0.5, 0.0) for _ in range(n)]
    share = np.mean([c for c, _ in answers])
    assert share == pytest.approx(phi(0.5), abs=0.03)
    rts = np.array([ms for _, ms in answers])
    assert np.median(rts) == pytest.approx(1200, rel=0.05)
    again = Observer(noise=1.0, scale=1.0, rng=np.random.default_rng(0))
    assert [again.answer(0.5, 0.0) for _ in range(50)] == answers[:50]

    lapser = Observer(noise=0.0, lapse=0.5, rng=np.random.default_rng(1))
    out = [lapser.answer(1.0, 0.0) for _ in range(n)]  # noiseless: always 1 unless lapsing
    assert np.mean([c for c, _ in out]) == pytest.approx(0.75, abs=0.03)
    fast = np.mean([ms < 300 for _, ms in out])  # fast guesses: half the answers are quick
    assert fast == pytest.approx(0.5, abs=0.03)


def test_spread_ignores_infinite_differences():
    assert spread([1.0, 3.0, math.inf, -math.inf]) == pytest.approx(1.0)
    assert spread([2.0]) == 1.0 and spread([1.0, 1.0]) == 1.0


def test_majority_agreement_curve():
    # a clear trial (19 of 20) and a split one (10 of 20)
    curve = majority_agreement([(20, 19), (20, 10)], range(1, 16))
    assert curve[1] < curve[5] < curve[15]
    assert 0.5 < curve[1] < 0.8 and curve[15] < 1
    clear = majority_agreement([(20, 19)], [1, 9])
    assert clear[1] == pytest.approx(0.9, abs=0.04) and clear[9] > 0.99
    assert majority_agreement([(0, 0)], [1]) == {}
    assert pairwise_agreement([(4, 4), (4, 2), (1, 1)]) == pytest.approx((1 + 4 / 12) / 2)
    assert pairwise_agreement([(1, 0)]) is None
    assert judgments_needed({1: 0.7, 3: 0.85, 5: 0.91}, 0.9) == 5
    assert judgments_needed({1: 0.7}, 0.9) is None
