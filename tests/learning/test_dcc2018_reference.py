"""The DCC 2018 reference method and its metrics against the reference's own Kodak log.

The log (``learning/saliency/data/dcc2018_log_KODAK.log``, MIT, from
github.com/iamaaditya/image-compression-cnn)
holds, per Kodak image, six VQMT metrics of Pillow's q50 JPEG. Our ffmpeg-luma + VQMT-definition pipeline
must give the same numbers per image: PSNR within 0.02 dB, SSIM / MS-SSIM / VIFP within 0.002,
PSNR-HVS(-M) within 0.05 dB.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from learning.metrics import get_metric, vqmt
from learning.metrics.color import rgb_to_y_uint8
from learning.metrics.yuv420 import ffmpeg_luma, vqmt_reading
from learning.saliency.reference import (
    QUALITY_STEPS,
    model_levels,
    pillow_jpeg,
    reference_composite,
    reference_jpeg,
)
from learning.saliency.reference_log import METRICS, load_log
from tests.learning.kodak import KODAK_DIR, needs_kodak

torch.set_num_threads(2)
TOLERANCE = {"PSNR": 0.02, "SSIM": 0.002, "MS-SSIM": 0.002, "VIFP": 0.002, "PSNR-HVS": 0.05,
             "PSNR-HVS-M": 0.05}


def test_log_is_the_reference_table():
    log = load_log()
    assert sorted(log) == [f"kodim{i:02d}" for i in range(1, 25)]
    assert {r.model for r in log.values()} == {6} and {r.jpeg_quality for r in log.values()} == {50}
    assert all(0 < r.size_excess <= 0.02 for r in log.values())  # made with threshold_pct = 2
    # the paper's standard-JPEG row is the log's mean
    assert np.mean([r.jpeg["PSNR"] for r in log.values()]) == pytest.approx(34.70, abs=0.01)
    assert np.mean([r.composite["PSNR"] for r in log.values()]) == pytest.approx(34.82, abs=0.01)


@needs_kodak
def test_standard_jpeg_metrics_match_the_log_per_image():
    """Every metric, every Kodak image, against the log's standard-JPEG column."""
    log = load_log()
    worst = dict.fromkeys(METRICS, 0.0)
    for stem, row in log.items():
        png = (KODAK_DIR / f"{stem}.png").read_bytes()
        with Image.open(KODAK_DIR / f"{stem}.png") as im:
            jpg = pillow_jpeg(im.convert("RGB"), 50)
        assert abs(len(jpg) / row.jpeg_bytes - 1) < 0.003, stem  # same encoder settings
        ours = vqmt.all_metrics(vqmt_reading(ffmpeg_luma(png)), vqmt_reading(ffmpeg_luma(jpg)))
        for m in METRICS:
            diff = abs(ours[m] - row.jpeg[m])
            worst[m] = max(worst[m], diff)
            assert diff <= TOLERANCE[m], (stem, m, ours[m], row.jpeg[m])
    print("max |ours - log|:", worst)


@needs_kodak
def test_correct_reading_differs_for_windowed_metrics_only():
    png = (KODAK_DIR / "kodim11.png").read_bytes()
    with Image.open(KODAK_DIR / "kodim11.png") as im:
        jpg = pillow_jpeg(im.convert("RGB"), 50)
    a, b = ffmpeg_luma(png), ffmpeg_luma(jpg)
    swapped = vqmt.all_metrics(vqmt_reading(a), vqmt_reading(b))
    correct = vqmt.all_metrics(a, b)
    assert swapped["PSNR"] == pytest.approx(correct["PSNR"], abs=1e-9)  # same pixels
    assert correct["SSIM"] < swapped["SSIM"] - 0.02  # the scrambled rows inflate SSIM
    assert correct["PSNR-HVS"] > swapped["PSNR-HVS"] + 1.0


def test_ffmpeg_luma_is_limited_range_bt601():
    rng = np.random.default_rng(0)
    rgb = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    y = ffmpeg_luma(buf.getvalue())
    assert y.shape == (64, 96) and y.min() >= 16 and y.max() <= 235
    assert np.abs(y.astype(int) - rgb_to_y_uint8(rgb)).max() <= 1  # swscale's fixed point vs exact rounding
    assert vqmt_reading(y).shape == (96, 64)
    assert np.array_equal(vqmt_reading(y).ravel(), y.ravel())


def test_vqmt_ssim_is_wangs_ssim():
    from pytorch_msssim import ssim

    rng = np.random.default_rng(1)
    a = rng.random((192, 256)) * 255
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255)
    ref = ssim(torch.tensor(a)[None, None].float(), torch.tensor(b)[None, None].float(), data_range=255,
               size_average=True, win_size=11, win_sigma=1.5).item()
    assert vqmt.ssim(a, b) == pytest.approx(ref, abs=1e-5)
    assert vqmt.ssim(a, a) == pytest.approx(1.0)
    assert vqmt.vifp(a, a) == pytest.approx(1.0)
    assert vqmt.ms_ssim(a, a) == pytest.approx(1.0)
    assert 0 < vqmt.vifp(a, b) < 1 and 0 < vqmt.ms_ssim(a, b) < 1


def test_vqmt_metrics_in_the_registry():
    x = torch.rand(2, 3, 176, 192)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    for name in ("vqmt-psnr", "vqmt-ssim", "vqmt-ms-ssim", "vqmt-vifp", "vqmt-psnr-hvs", "vqmt-psnr-hvs-m"):
        v = get_metric(name)(x, y)
        assert v.shape == (2,) and torch.isfinite(v).all(), name


def test_model_levels_follow_the_reference_rules():
    s = np.arange(100, dtype=np.uint8).reshape(10, 10)  # distinct values 0..99
    q = np.asarray(QUALITY_STEPS)
    six = q[model_levels(s, 6)]
    assert set(six[s < 49.5]) == {80} and set(six[s > 49.5]) == {100}
    five = q[model_levels(s, 5)]
    assert set(five[s < 49.5]) == {30} and set(five[s > 49.5]) == {90}
    one = q[model_levels(s, 1)]
    assert set(one[s > s.mean()]) == {100} and set(one[s <= s.mean()]) == {70}
    two = model_levels(s, 2)
    assert two[0, 0] == 2 and two[9, 9] == 9  # ⌊10·s/max⌋ + 2, clipped to 9
    four = q[model_levels(s, 4)]
    assert four[0, 0] == 50 and four[5, 0] == 70 and four[8, 5] == 90 and four[9, 9] == 100
    three = model_levels(s, 3)
    assert three[0, 0] == 1 and three[9, 8] == 9  # quality 10 is never used (clipped to level 1)
    # the maximum pixel keeps the level of the pixel before it in raster order (the reference's loop)
    t = np.array([[10, 200, 50, 200]], dtype=np.uint8)
    lv = model_levels(t, 3)
    assert lv[0, 1] == lv[0, 0] and lv[0, 3] == lv[0, 2]


def test_reference_size_rule():
    rng = np.random.default_rng(2)
    base = np.kron(rng.random((12, 16, 3)), np.ones((8, 8, 1))) * 255
    im = Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))
    sal = np.tile(np.linspace(0, 1, 128, dtype=np.float32), (96, 1))
    comp, qmap = reference_composite(im, sal, 6)
    assert set(np.unique(qmap)) == {80, 100} and comp.size == im.size
    for t in (0.0, 2.0, 20.0):
        r = reference_jpeg(im, sal, 6, t)
        limit = len(r.standard) * (1 + t / 100)
        assert r.met and len(r.data) <= limit
        if r.final_quality < 90:  # the first quality from 90 down that fits
            assert len(pillow_jpeg(comp, r.final_quality + 1)) > limit
