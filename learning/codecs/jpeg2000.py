"""JPEG 2000 through Pillow/OpenJPEG.

Quality is a continuous setting in [1, 100] mapped monotonically to OpenJPEG's compression ratio:
``ratio = 2 · 10^((100 − q) / 40)`` (q = 100 → 12 bpp, q = 1 → ≈0.04 bpp for RGB), so higher quality
always means more bits, which is what rate targeting needs.
"""

from __future__ import annotations

import io

import PIL
from PIL import Image, features

from learning.codecs.base import Codec, decode_with_pillow


def quality_to_ratio(quality: float) -> float:
    return 2.0 * 10.0 ** ((100.0 - float(quality)) / 40.0)


class JPEG2000(Codec):
    name = "jpeg2000"
    quality_range = (1.0, 100.0)
    integer_quality = False
    extension = "jp2"
    description = "JPEG 2000 (Pillow/OpenJPEG), 9/7 wavelet + colour transform, quality -> ratio"

    def available(self) -> bool:
        return bool(features.check("jpg_2000"))

    def version(self) -> str:
        return f"Pillow {PIL.__version__}, OpenJPEG {features.version('jpg_2000')}"

    def encode_quality(self, image: Image.Image, quality: float) -> bytes:
        buf = io.BytesIO()
        image.save(
            buf,
            "JPEG2000",
            quality_mode="rates",
            quality_layers=[quality_to_ratio(quality)],
            irreversible=True,
            mct=1,  # RGB -> YCbCr colour transform (Pillow's default is none: ~3 dB worse)
            no_jp2=False,
        )
        return buf.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        return decode_with_pillow(data, self.name)
