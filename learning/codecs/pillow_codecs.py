"""JPEG and WebP through Pillow (the foundation's codecs; more families live beside this module)."""

from __future__ import annotations

import io

import PIL
from PIL import Image

from learning.codecs.base import Codec, decode_with_pillow
from learning.codecs.jpeg_tables import qtables_for


class JPEG(Codec):
    """Quality is continuous: a fractional quality scales the Annex-K tables by libjpeg's own formula
    (``qtables_for``), so integer qualities give exactly Pillow's ``quality=`` files and rate control can
    land between them."""

    name = "jpeg"
    quality_range = (1, 95)
    integer_quality = False
    extension = "jpg"
    description = "JPEG (Pillow/libjpeg-turbo), 4:2:0, continuous quality"
    subsampling = 2  # Pillow: 0 = 4:4:4, 2 = 4:2:0

    def version(self) -> str:
        return f"Pillow {PIL.__version__}"

    def encode_quality(self, image: Image.Image, quality: float) -> bytes:
        buf = io.BytesIO()
        if float(quality).is_integer():
            image.save(buf, "JPEG", quality=int(quality), subsampling=self.subsampling, optimize=True)
        else:
            image.save(buf, "JPEG", qtables=qtables_for(quality), subsampling=self.subsampling, optimize=True)
        return buf.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        return decode_with_pillow(data, self.name)


class JPEG444(JPEG):
    name = "jpeg444"
    description = "JPEG (Pillow/libjpeg-turbo), 4:4:4, continuous quality"
    subsampling = 0


class WebP(Codec):
    name = "webp"
    quality_range = (0, 100)
    integer_quality = False  # Pillow hands libwebp its float quality (WebPConfig.quality)
    extension = "webp"
    description = "WebP lossy (Pillow/libwebp), continuous quality"

    def version(self) -> str:
        return f"Pillow {PIL.__version__}"

    def encode_quality(self, image: Image.Image, quality: float) -> bytes:
        buf = io.BytesIO()
        image.save(buf, "WEBP", quality=float(quality), method=6)
        return buf.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        return decode_with_pillow(data, self.name)
