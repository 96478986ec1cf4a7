"""Classical metrics checked against hand formulas or a second implementation."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from scipy.signal import fftconvolve

from learning.errors import LearningError
from learning.metrics import get_metric
from learning.metrics.color import rgb_to_y_tensor, rgb_to_y_uint8

torch.set_num_threads(2)


def _pair(c: int = 3, h: int = 192, w: int = 224, noise: float = 0.04, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, c, h, w, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # some spatial structure
    y = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y


def _piq():
    from learning.compat import ensure_torchvision

    ensure_torchvision()
    import piq

    return piq


def test_psnr_matches_hand_formula():
    x, y = _pair()
    expected = [10 * np.log10(1.0 / np.mean((x[i].numpy().astype(np.float64) - y[i].numpy()) ** 2))
                for i in range(2)]
    assert get_metric("psnr")(x, y).numpy() == pytest.approx(expected, abs=1e-4)
    assert get_metric("psnr").distance(x, y)[0] < get_metric("psnr").distance(x, (y + 0.1).clamp(0, 1))[0]


@pytest.mark.parametrize("c", [1, 3])
def test_ssim_matches_piq(c):
    x, y = _pair(c)
    ours = get_metric("ssim")(x, y)
    ref = _piq().ssim(x, y, data_range=1.0, downsample=False, reduction="none")
    assert torch.allclose(ours, ref, atol=1e-4)
    assert torch.allclose(get_metric("ssim")(x, x), torch.ones(2), atol=1e-5)


def test_ms_ssim_matches_piq_and_rejects_small_images():
    x, y = _pair(3, 192, 224)
    ours = get_metric("ms-ssim")(x, y)
    ref = _piq().multi_scale_ssim(x, y, data_range=1.0, reduction="none")
    assert torch.allclose(ours, ref, atol=1e-3)
    small = torch.rand(1, 3, 128, 300)
    with pytest.raises(LearningError, match="ms-ssim needs"):
        get_metric("ms-ssim")(small, small)


def test_psnr_hvs_matches_package_cpp_backend():
    with contextlib.redirect_stdout(io.StringIO()):
        import psnr_hvsm
    if "cpp" not in psnr_hvsm.BACKENDS:
        pytest.skip("psnr_hvsm C++ backend not built here")
    x, y = _pair(3, 64, 72)
    a = rgb_to_y_tensor(x)[:, 0].double().numpy()
    b = rgb_to_y_tensor(y)[:, 0].double().numpy()
    hvs, hvsm = get_metric("psnr-hvs")(x, y), get_metric("psnr-hvs-m")(x, y)
    for i in range(2):
        h, m = psnr_hvsm.BACKENDS["cpp"]["psnr_hvs_hvsm"](a[i], b[i])
        assert hvs[i].item() == pytest.approx(h, abs=1e-3)
        assert hvsm[i].item() == pytest.approx(m, abs=1e-3)
    assert (hvsm > hvs).all()  # masking only removes error


def _vifp_reference(ref: np.ndarray, dist: np.ndarray) -> float:
    """Direct port of Sheikh & Bovik's vifp_mscale.m (pixel values 0..255)."""
    sigma_nsq, num, den = 2.0, 0.0, 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        ax = np.arange(n) - (n - 1) / 2
        win = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * (n / 5) ** 2))
        win /= win.sum()

        def filt(img, win=win):
            return fftconvolve(img, win[::-1, ::-1], mode="valid")

        if scale > 1:
            ref, dist = filt(ref)[::2, ::2], filt(dist)[::2, ::2]
        mu1, mu2 = filt(ref), filt(dist)
        s1 = np.maximum(filt(ref * ref) - mu1 * mu1, 0)
        s2 = np.maximum(filt(dist * dist) - mu2 * mu2, 0)
        s12 = filt(ref * dist) - mu1 * mu2
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        m = s1 < 1e-10
        g[m], sv[m], s1[m] = 0, s2[m], 0
        m = s2 < 1e-10
        g[m], sv[m] = 0, 0
        m = g < 0
        sv[m], g[m] = s2[m], 0
        sv[sv <= 1e-10] = 1e-10
        num += np.sum(np.log10(1 + g**2 * s1 / (sv + sigma_nsq)))
        den += np.sum(np.log10(1 + s1 / sigma_nsq))
    return num / den


def test_vifp_matches_reference_port():
    x, y = _pair(3, 96, 112, noise=0.03)
    ours = get_metric("vifp")(x, y)
    for i in range(2):
        yr = rgb_to_y_tensor(x[i : i + 1])[0, 0].double().numpy() * 255
        yd = rgb_to_y_tensor(y[i : i + 1])[0, 0].double().numpy() * 255
        assert ours[i].item() == pytest.approx(_vifp_reference(yr, yd), abs=2e-3)
    assert get_metric("vifp")(x, x).numpy() == pytest.approx([1.0, 1.0], abs=1e-3)


def test_luma_conversions_agree():
    rgb = (np.random.default_rng(0).random((8, 9, 3)) * 255).astype(np.uint8)
    y8 = rgb_to_y_uint8(rgb)
    yt = rgb_to_y_tensor(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)[0, 0].numpy() * 255
    assert np.abs(y8.astype(float) - yt).max() <= 0.5 + 1e-4
    assert rgb_to_y_uint8(np.zeros((1, 1, 3), np.uint8))[0, 0] == 16
    assert rgb_to_y_uint8(np.full((1, 1, 3), 255, np.uint8))[0, 0] == 235


def test_shape_mismatch_is_a_learning_error():
    with pytest.raises(LearningError):
        get_metric("psnr")(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
