"""AVIF (AV1 intra) through Pillow's built-in AVIF support (Pillow ≥ 11)."""

from __future__ import annotations

import io

import PIL
from PIL import Image, features

from learning.codecs.base import Codec, register
from learning.codecs.pillow_codecs import _decode_with_pillow


@register("avif")
class AVIF(Codec):
    name = "avif"
    quality_range = (0, 100)
    extension = "avif"
    description = "AVIF (Pillow/libavif), 4:2:0, speed 6"
    speed = 6

    def available(self) -> bool:
        try:
            return bool(features.check("avif"))
        except ValueError:  # Pillow older than 11 does not know the feature
            return False

    def version(self) -> str:
        return f"Pillow {PIL.__version__}, libavif {features.version('avif')}"

    def encode_quality(self, image: Image.Image, quality: float) -> bytes:
        buf = io.BytesIO()
        image.save(buf, "AVIF", quality=int(quality), speed=self.speed, subsampling="4:2:0")
        return buf.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        return _decode_with_pillow(data, self.name)
