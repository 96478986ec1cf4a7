"""The metrics as VQMT 1.1 (EPFL MMSPG; the tool the DCC 2018 authors ran) defines them, on 8-bit luma.

Written here from the definitions (Wang et al. 2003/2004, Sheikh & Bovik 2006, Ponomarenko et al.
2006/2007) with VQMT's own choices, which differ from the MATLAB references and from our ``ssim`` /
``ms-ssim`` / ``vifp`` registry entries in these points:

- every metric works on the luma plane only, as 0…255 floats; windows are applied "valid" (no padding);
- ``ssim``: 11×11 Gaussian σ 1.5, C1 = (0.01·255)², C2 = (0.03·255)², mean of the map, no downsampling;
- ``ms-ssim``: 5 levels, each level the previous one halved by 2×2 averaging (no low-pass filter before),
  weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) on the contrast-structure means of levels 1–4, and
  the coarsest level's *SSIM* multiplied in **without** its weight (VQMT's product); sides must be
  multiples of 16;
- ``vifp``: 4 scales, window N = 2^(5−s)+1 with σ = N/5 (N = 17, 9, 5, 3); before scales 2–4 the previous
  scale is filtered with that scale's window (valid) and every other sample kept (nearest-neighbour
  resize to ⌊(side−N+1)/2⌋, OpenCV's index rule); σ_n² = 2; sides must be multiples of 8;
- ``psnr-hvs`` / ``psnr-hvs-m``: 8×8 non-overlapping DCT tiles with the published CSF and masking tables;
  VQMT's formulas are those of the ``psnr_hvsm`` package, which computes them here.

Float64 throughout (VQMT uses float32; the difference is below 1e-5 in every metric on Kodak).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from scipy.ndimage import correlate1d

from learning.errors import LearningError
from learning.metrics.color import rgb_to_y_tensor
from learning.metrics.registry import register

with contextlib.redirect_stdout(io.StringIO()):  # the package prints about its optional backends
    from psnr_hvsm.numpy import psnr_hvs_hvsm

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
VIFP_SCALES = 4
VIFP_SIGMA_NSQ = 2.0
VIFP_EPS = 1e-10
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2


def gaussian_window(n: int, sigma: float) -> np.ndarray:
    """1-D normalised Gaussian of ``n`` taps (the separable factor of MATLAB's fspecial / OpenCV's kernel)."""
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation with ``window`` keeping only fully covered positions ('valid')."""
    r = (len(window) - 1) // 2
    y = correlate1d(correlate1d(x, window, axis=0, mode="nearest"), window, axis=1, mode="nearest")
    return y[r:y.shape[0] - r, r:y.shape[1] - r]


def psnr(ref: np.ndarray, dist: np.ndarray) -> float:
    """10·log10(255² / MSE) on 0…255 luma."""
    mse = float(np.mean((ref.astype(np.float64) - dist) ** 2))
    return 100.0 if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def ssim_cs(ref: np.ndarray, dist: np.ndarray) -> tuple[float, float]:
    """(mean SSIM, mean contrast-structure term) with an 11×11 Gaussian σ 1.5, valid."""
    a, b = ref.astype(np.float64), dist.astype(np.float64)
    w = gaussian_window(11, 1.5)
    mu1, mu2 = filter_valid(a, w), filter_valid(b, w)
    s11 = filter_valid(a * a, w) - mu1 * mu1
    s22 = filter_valid(b * b, w) - mu2 * mu2
    s12 = filter_valid(a * b, w) - mu1 * mu2
    cs = (2 * s12 + SSIM_C2) / (s11 + s22 + SSIM_C2)
    lum = (2 * mu1 * mu2 + SSIM_C1) / (mu1 * mu1 + mu2 * mu2 + SSIM_C1)
    return float(np.mean(lum * cs)), float(np.mean(cs))


def ssim(ref: np.ndarray, dist: np.ndarray) -> float:
    return ssim_cs(ref, dist)[0]


def _halve(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[0] // 2, x.shape[1] // 2
    return x[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))


def ms_ssim(ref: np.ndarray, dist: np.ndarray) -> float:
    """VQMT's MS-SSIM: Π_{l<5} cs_l^w_l · SSIM_5 (see module doc)."""
    if ref.shape[0] % 16 or ref.shape[1] % 16:
        raise LearningError(f"VQMT MS-SSIM needs sides that are multiples of 16, got {ref.shape}")
    if min(ref.shape) < 16 * 11:
        raise LearningError(f"VQMT MS-SSIM needs sides of at least 176 (5th level ≥ 11), got {ref.shape}")
    a, b = ref.astype(np.float64), dist.astype(np.float64)
    value = 1.0
    for level, weight in enumerate(MS_SSIM_WEIGHTS):
        s, cs = ssim_cs(a, b)
        if level == len(MS_SSIM_WEIGHTS) - 1:
            return value * s
        value *= cs**weight
        a, b = _halve(a), _halve(b)
    raise AssertionError("unreachable")


def _nearest_half(x: np.ndarray) -> np.ndarray:
    """OpenCV INTER_NEAREST resize to half the size (floor): source index ⌊i·src/dst⌋."""
    out = x
    for axis in (0, 1):
        src = out.shape[axis]
        dst = src // 2
        idx = np.minimum(np.floor(np.arange(dst) * (src / dst)).astype(np.int64), src - 1)
        out = np.take(out, idx, axis=axis)
    return out


def _vifp_terms(ref: np.ndarray, dist: np.ndarray, window: np.ndarray) -> tuple[float, float]:
    mu1, mu2 = filter_valid(ref, window), filter_valid(dist, window)
    s11 = np.maximum(filter_valid(ref * ref, window) - mu1 * mu1, 0.0)
    s22 = np.maximum(filter_valid(dist * dist, window) - mu2 * mu2, 0.0)
    s12 = filter_valid(ref * dist, window) - mu1 * mu2
    g = s12 / (s11 + VIFP_EPS)
    sv = s22 - g * s12
    flat_ref = s11 < VIFP_EPS
    g = np.where(flat_ref, 0.0, g)
    sv = np.where(flat_ref, s22, sv)
    s11 = np.where(flat_ref, 0.0, s11)
    flat_dist = s22 < VIFP_EPS
    g = np.where(flat_dist, 0.0, g)
    sv = np.where(flat_dist, 0.0, sv)
    sv = np.where(g < 0, s22, sv)
    g = np.maximum(g, 0.0)
    sv = np.maximum(sv, VIFP_EPS)
    num = float(np.sum(np.log10(1.0 + g * g * s11 / (sv + VIFP_SIGMA_NSQ))))
    den = float(np.sum(np.log10(1.0 + s11 / VIFP_SIGMA_NSQ)))
    return num, den


def vifp(ref: np.ndarray, dist: np.ndarray) -> float:
    """VQMT's pixel-domain VIF over 4 scales (see module doc)."""
    if ref.shape[0] % 8 or ref.shape[1] % 8:
        raise LearningError(f"VQMT VIFP needs sides that are multiples of 8, got {ref.shape}")
    a, b = ref.astype(np.float64), dist.astype(np.float64)
    num = den = 0.0
    for scale in range(VIFP_SCALES):
        n = 2 ** (VIFP_SCALES - scale) + 1
        window = gaussian_window(n, n / 5.0)
        if scale > 0:
            a, b = _nearest_half(filter_valid(a, window)), _nearest_half(filter_valid(b, window))
        dn, dd = _vifp_terms(a, b, window)
        num, den = num + dn, den + dd
    return num / den


def psnr_hvs_both(ref: np.ndarray, dist: np.ndarray) -> tuple[float, float]:
    """(PSNR-HVS, PSNR-HVS-M) on 0…255 luma whose sides are multiples of 8 (psnr_hvsm package)."""
    if ref.shape[0] % 8 or ref.shape[1] % 8:
        raise LearningError(f"VQMT PSNR-HVS needs sides that are multiples of 8, got {ref.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):  # flat tiles: the package handles 0/0
        h, m = psnr_hvs_hvsm(ref.astype(np.float64) / 255.0, dist.astype(np.float64) / 255.0)
    return float(h), float(m)


def all_metrics(ref: np.ndarray, dist: np.ndarray) -> dict[str, float]:
    """The six VQMT metrics of the DCC 2018 log, in its column order, for two luma planes (0…255)."""
    hvs, hvsm = psnr_hvs_both(ref, dist)
    return {"PSNR": psnr(ref, dist), "SSIM": ssim(ref, dist), "MS-SSIM": ms_ssim(ref, dist),
            "VIFP": vifp(ref, dist), "PSNR-HVS": hvs, "PSNR-HVS-M": hvsm}


def _per_image(fn):
    def metric(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        a = (rgb_to_y_tensor(ref.double()) * 255.0)[:, 0].cpu().numpy()
        b = (rgb_to_y_tensor(dist.double()) * 255.0)[:, 0].cpu().numpy()
        return torch.tensor([fn(x, y) for x, y in zip(a, b)], dtype=torch.float32)

    return metric


_ON = "VQMT 1.1 definition (learning/metrics/vqmt.py) on BT.601 limited-range luma"
for _name, _fn in (("psnr", psnr), ("ssim", ssim), ("ms-ssim", ms_ssim), ("vifp", vifp),
                   ("psnr-hvs", lambda a, b: psnr_hvs_both(a, b)[0]),
                   ("psnr-hvs-m", lambda a, b: psnr_hvs_both(a, b)[1])):
    register(f"vqmt-{_name}", higher_is_better=True, implementation=_ON)(_per_image(_fn))
