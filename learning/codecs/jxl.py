"""JPEG XL through pillow-jxl-plugin (libjxl bindings that work with numpy < 2)."""

from __future__ import annotations

import io
from importlib import metadata

from PIL import Image

from learning.codecs.base import Codec, register
from learning.codecs.pillow_codecs import _decode_with_pillow

try:
    import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)
except ImportError:  # optional library: the codec reports itself unavailable
    pillow_jxl = None


@register("jxl")
class JXL(Codec):
    name = "jxl"
    quality_range = (0, 99)
    extension = "jxl"
    description = "JPEG XL lossy (pillow-jxl-plugin/libjxl), effort 7"
    effort = 7
    integer_quality = False  # libjxl maps a float quality to its butteraugli distance: rate control is fine

    def available(self) -> bool:
        return pillow_jxl is not None

    def version(self) -> str:
        return f"pillow-jxl-plugin {metadata.version('pillow-jxl-plugin')}"

    def encode_quality(self, image: Image.Image, quality: float) -> bytes:
        buf = io.BytesIO()
        image.save(buf, "JXL", quality=float(quality), effort=self.effort, lossless=False)
        return buf.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        return _decode_with_pillow(data, self.name)
