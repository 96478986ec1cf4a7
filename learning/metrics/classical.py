"""Classical full-reference metrics, registered in the one metric registry.

All take two N×C×H×W float batches in [0, 1] (C = 3 RGB or 1 luma) and return N values, higher = better.

- ``psnr``: 10·log10(1 / MSE), data range 1, MSE over all channels and pixels of each image.
- ``ssim``: pytorch-msssim, Gaussian window 11 / σ 1.5, K = (0.01, 0.03), no padding ("valid"),
  no pre-downsampling; on RGB it is the mean of the three per-channel SSIMs, on C = 1 it is luma SSIM.
- ``ms-ssim``: pytorch-msssim, same window, the 5 standard scales and weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). Needs a smaller side > 160 px; smaller images raise a
  ``LearningError`` (we do not silently change the definition by dropping scales).
- ``psnr-hvs`` / ``psnr-hvs-m``: the ``psnr_hvsm`` package (Ponomarenko et al. 2006/2007, 8×8 DCT,
  non-overlapping tiles), on luma: RGB input is converted to BT.601 limited-range Y (see ``color.py``);
  H and W are cropped to multiples of 8.
- ``vifp``: piq.vif_p (pixel-domain VIF, Sheikh & Bovik, 4 scales, σ_n² = 2), on the same luma.
- ``ciede2000``: the mean CIEDE2000 colour difference over pixels (scikit-image: ``rgb2lab`` from sRGB
  under D65, then ``deltaE_ciede2000`` with kL = kC = kH = 1); a distance (lower = closer), RGB only.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from pytorch_msssim import ssim as _ssim
from skimage.color import deltaE_ciede2000, rgb2lab

from learning.compat import ensure_torchvision
from learning.errors import LearningError
from learning.metrics.color import rgb_to_y_tensor
from learning.metrics.registry import register

with contextlib.redirect_stdout(io.StringIO()):  # the package prints about its optional backends
    from psnr_hvsm.numpy import psnr_hvs_hvsm

MS_SSIM_MIN_SIDE = 161  # pytorch-msssim: smaller side must exceed (11 - 1) * 2**4


@register("psnr", higher_is_better=True, implementation="10·log10(1/MSE), data range 1 (own code)")
def psnr(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    mse = ((ref.double() - dist.double()) ** 2).flatten(1).mean(1)
    return (10.0 * torch.log10(1.0 / mse.clamp_min(1e-20))).float()


@register("ssim", higher_is_better=True,
          implementation="pytorch-msssim ssim, Gaussian 11/1.5; RGB: mean over channels")
def ssim(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    if min(ref.shape[-2:]) < 11:
        raise LearningError(f"ssim needs images of at least 11×11 pixels, got {tuple(ref.shape[-2:])}")
    return _ssim(ref.float(), dist.float(), data_range=1.0, size_average=False, win_size=11, win_sigma=1.5)


@register("ms-ssim", higher_is_better=True,
          implementation="pytorch-msssim ms_ssim, 5 scales, Gaussian 11/1.5; RGB: mean over channels")
def ms_ssim(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    if min(ref.shape[-2:]) < MS_SSIM_MIN_SIDE:
        raise LearningError(f"ms-ssim needs a smaller image side of at least {MS_SSIM_MIN_SIDE} px "
                            f"(5 scales, 11-px window), got {tuple(ref.shape[-2:])}; use ssim instead")
    return _ms_ssim(ref.float(), dist.float(), data_range=1.0, size_average=False, win_size=11,
                    win_sigma=1.5)


def _luma_numpy(x: torch.Tensor) -> np.ndarray:
    y = rgb_to_y_tensor(x)[:, 0].double().cpu().numpy()
    h, w = (y.shape[1] // 8) * 8, (y.shape[2] // 8) * 8
    if h == 0 or w == 0:
        raise LearningError(f"psnr-hvs needs images of at least 8×8 pixels, got {tuple(x.shape[-2:])}")
    return y[:, :h, :w]


def psnr_hvs_both(ref: torch.Tensor, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(PSNR-HVS, PSNR-HVS-M) per image, from one pass of the psnr_hvsm package on luma."""
    a, b = _luma_numpy(ref), _luma_numpy(dist)
    hvs, hvsm = [], []
    for i in range(a.shape[0]):
        with np.errstate(invalid="ignore", divide="ignore"):  # flat tiles: the package handles 0/0
            h, m = psnr_hvs_hvsm(a[i], b[i])
        hvs.append(float(h))
        hvsm.append(float(m))
    return torch.tensor(hvs), torch.tensor(hvsm)


@register("psnr-hvs", higher_is_better=True,
          implementation="psnr_hvsm package (numpy backend) on BT.601 limited-range luma")
def psnr_hvs(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    return psnr_hvs_both(ref, dist)[0]


@register("psnr-hvs-m", higher_is_better=True,
          implementation="psnr_hvsm package (numpy backend) on BT.601 limited-range luma")
def psnr_hvs_m(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    return psnr_hvs_both(ref, dist)[1]


@register("ciede2000", higher_is_better=False,
          implementation="scikit-image rgb2lab (sRGB, D65) + deltaE_ciede2000, mean over pixels")
def ciede2000(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    if ref.shape[1] != 3:
        raise LearningError(f"ciede2000 needs RGB images (3 channels), got {ref.shape[1]}")
    a = ref.detach().permute(0, 2, 3, 1).double().clamp(0, 1).cpu().numpy()
    b = dist.detach().permute(0, 2, 3, 1).double().clamp(0, 1).cpu().numpy()
    return torch.tensor([float(deltaE_ciede2000(rgb2lab(a[i]), rgb2lab(b[i])).mean()) for i in range(len(a))],
                        dtype=torch.float32)


@register("vifp", higher_is_better=True, implementation="piq.vif_p on BT.601 limited-range luma")
def vifp(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    ensure_torchvision()
    import piq  # it imports torchvision at import time: here, after the shim, not at the top

    if min(ref.shape[-2:]) < 41:
        raise LearningError(f"vifp needs images of at least 41×41 pixels, got {tuple(ref.shape[-2:])}")
    a, b = rgb_to_y_tensor(ref.float()), rgb_to_y_tensor(dist.float())
    # piq's convention is vif_p(distorted, reference): its second argument is the reference signal.
    return piq.vif_p(b, a, data_range=1.0, reduction="none")
