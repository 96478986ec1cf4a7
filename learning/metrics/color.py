"""RGB → luma conversions shared by the classical metrics and the MSROI table.

Both use the ITU-R BT.601 matrix with *limited range* (studio swing) luma, which is what ffmpeg's
``yuv420p`` conversion (and the VQMT tool used by Prakash et al. 2018) feeds to metrics:

    Y = 16 + 65.481 R + 128.553 G + 24.966 B      (R, G, B in [0, 1]; Y in [16, 235])
"""

from __future__ import annotations

import numpy as np
import torch

_COEFFS = (65.481, 128.553, 24.966)


def rgb_to_y_tensor(x: torch.Tensor) -> torch.Tensor:
    """N×3×H×W RGB in [0, 1] → N×1×H×W BT.601 limited-range luma divided by 255 (float, not rounded).

    N×1×H×W input is returned unchanged (already luma).
    """
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]}")
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (16.0 + _COEFFS[0] * r + _COEFFS[1] * g + _COEFFS[2] * b) / 255.0


def rgb_to_y_uint8(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 RGB → H×W uint8 BT.601 limited-range luma, rounded (ffmpeg yuv420p's Y plane)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB array, got shape {rgb.shape}")
    f = rgb.astype(np.float64) / 255.0
    y = 16.0 + _COEFFS[0] * f[..., 0] + _COEFFS[1] * f[..., 1] + _COEFFS[2] * f[..., 2]
    return np.clip(np.round(y), 0, 255).astype(np.uint8)
