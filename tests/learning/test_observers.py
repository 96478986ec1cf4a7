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


def test_weighted_sum_specs_and_their_one_line_errors():
    from learning.observers import parse_observer

    single = parse_observer(" psnr ")
    assert single.name == "psnr" and single.weights == [1.0] and single.scales == [1.0]
    mix = parse_observer("0.5*psnr+0.3*ciede2000+ssim")
    assert mix.weights == [0.5, 0.3, 1.0]
    assert [c.metric.name for c in mix.caches] == ["psnr", "ciede2000", "ssim"]
    for spec, needle in [("", "the observer is empty"), ("  ", "the observer is empty"),
                         ("psnr+", "an empty term"), ("x*psnr", "weight 'x' of 'x\\*psnr' is not a number"),
                         ("-1*psnr", "must be a positive number"), ("0*psnr", "must be a positive number"),
                         ("inf*psnr", "must be a positive number"), ("0.5*", "names no metric"),
                         ("0.5*psnr+0.5*nope", "unknown metric 'nope'")]:
        with pytest.raises(LearningError, match=needle) as e:
            parse_observer(spec)
        assert "\n" not in str(e.value)


def test_weighted_sum_is_each_term_over_its_spread():
    from learning.observers import parse_observer

    obs = parse_observer("2*psnr+1*ciede2000")
    ref = _img(1)
    imgs = [np.clip(ref.astype(int) + np.random.default_rng(s).integers(-k, k + 1, ref.shape), 0, 255)
            .astype(np.uint8) for s, k in ((2, 3), (3, 10), (4, 30), (5, 60))]
    per_term = [obs.term_distances(ref, im) for im in imgs]
    pairs = [(0, 1), (1, 2), (2, 3), (0, 3)]
    obs.calibrate([[per_term[a][i] - per_term[b][i] for a, b in pairs] for i in range(2)])
    s = [spread([per_term[a][i] - per_term[b][i] for a, b in pairs]) for i in range(2)]
    assert obs.scales == pytest.approx(s) and all(x > 0 for x in s)
    for im, (d_psnr, d_de) in zip(imgs, per_term):
        assert obs.distance(ref, im) == pytest.approx(2 * d_psnr / s[0] + d_de / s[1])
    # more noise: further under both terms, so further under the sum
    assert [obs.distance(ref, im) for im in imgs] == sorted(obs.distance(ref, im) for im in imgs)
    one = parse_observer("psnr")  # a single metric keeps its own units
    one.calibrate([[1.0, 5.0, 9.0]])
    assert one.scales == [1.0] and one.distance(ref, imgs[0]) == per_term[0][0]


SHARMA_2005 = [  # Sharma, Wu & Dalal (2005), CIEDE2000 test data: (Lab 1, Lab 2, ΔE00)
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 2.8361, -74.0200), (50.0, 0.0, -82.7485), 3.4412),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (50.0, 3.1736, 0.5854), 1.0000),
]


def test_ciede2000_follows_the_reference_data_and_is_the_mean_over_pixels():
    import torch
    from skimage.color import deltaE_ciede2000, rgb2lab

    from learning.metrics.registry import get_metric

    for lab1, lab2, expected in SHARMA_2005:
        got = float(deltaE_ciede2000(np.array(lab1), np.array(lab2)))
        assert got == pytest.approx(expected, abs=5e-5)
    metric = get_metric("ciede2000")
    assert not metric.higher_is_better
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 8, 8))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    got = metric(torch.tensor(a), torch.tensor(b))
    for i in range(2):  # per image: the mean of the per-pixel ΔE00 of the Lab values
        lab_a, lab_b = rgb2lab(a[i].transpose(1, 2, 0)), rgb2lab(b[i].transpose(1, 2, 0))
        assert float(got[i]) == pytest.approx(float(deltaE_ciede2000(lab_a, lab_b).mean()), rel=1e-5)
    assert float(metric(torch.tensor(a), torch.tensor(a))[0]) == pytest.approx(0.0, abs=1e-9)
    grey = torch.full((1, 3, 4, 4), 0.5)
    red = grey.clone()
    red[:, 0] = 0.6
    assert float(metric(grey, red)[0]) > 1.0  # a visible colour shift
    with pytest.raises(LearningError, match="ciede2000 needs RGB images"):
        metric(grey[:, :1], red[:, :1])
