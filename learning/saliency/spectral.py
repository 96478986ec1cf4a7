"""Weight-free saliency: spectral residual (Hou & Zhang, CVPR 2007) + colour contrast + a weak centre bias.

1. Spectral residual on the luma downscaled to 64 px wide: residual R = log|F| − box3(log|F|),
   map = |IFFT(exp(R + i·phase))|², Gaussian blur (σ = 2.5 px at 64 px).
2. Colour contrast: distance of each pixel's (blurred) CIELAB-like opponent colour from the mean colour.
3. Both normalised to [0, 1], averaged, multiplied by 0.7 + 0.3·G(centre) (σ = ½ of each side),
   normalised again and bilinearly upsampled to the image size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, uniform_filter

from learning.saliency.maps import check_rgb, normalise, resize_map

WORK_WIDTH = 64


class SpectralSaliency:
    name = "spectral"
    description = "spectral residual (Hou & Zhang 2007) + colour contrast + centre bias; weight-free"

    def __init__(self, work_width: int = WORK_WIDTH, centre_weight: float = 0.3):
        self.work_width = work_width
        self.centre_weight = centre_weight

    def map(self, image: Image.Image) -> np.ndarray:
        image = check_rgb(image)
        w, h = image.size
        ww = self.work_width
        wh = max(8, round(h * ww / w))
        small = np.asarray(image.resize((ww, wh), Image.BILINEAR), dtype=np.float64) / 255.0

        sr = normalise(self._spectral_residual(small))
        cc = normalise(self._colour_contrast(small))
        yy, xx = np.mgrid[0:wh, 0:ww]
        centre = np.exp(-(((xx - (ww - 1) / 2) / (ww / 2)) ** 2 + ((yy - (wh - 1) / 2) / (wh / 2)) ** 2) / 2)
        combined = (0.5 * sr + 0.5 * cc) * (1 - self.centre_weight + self.centre_weight * centre)
        return resize_map(normalise(combined), (w, h))

    @staticmethod
    def _spectral_residual(rgb: np.ndarray) -> np.ndarray:
        y = rgb @ np.array([0.299, 0.587, 0.114])
        f = np.fft.fft2(y)
        log_amp = np.log(np.abs(f) + 1e-9)
        residual = log_amp - uniform_filter(log_amp, size=3, mode="wrap")
        sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(f)))) ** 2
        return gaussian_filter(sal, sigma=2.5)

    @staticmethod
    def _colour_contrast(rgb: np.ndarray) -> np.ndarray:
        # opponent colour space (luma, red-green, yellow-blue); cheap stand-in for CIELAB
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        opp = np.stack([0.299 * r + 0.587 * g + 0.114 * b, r - g, 0.5 * (r + g) - b], axis=-1)
        opp = gaussian_filter(opp, sigma=(1.5, 1.5, 0))
        return np.sqrt(((opp - opp.reshape(-1, 3).mean(0)) ** 2).sum(-1))
