"""HEIC (HEVC intra, the practical stand-in for BPG) through pillow-heif with libheif + x265."""

from __future__ import annotations

import io

from PIL import Image

from learning.codecs.base import Codec, register
from learning.errors import LearningError

try:
    import pillow_heif
except ImportError:  # optional library: the codec reports itself unavailable
    pillow_heif = None


@register("heic")
class HEIC(Codec):
    name = "heic"
    quality_range = (0, 100)
    extension = "heic"
    description = "HEIC/HEVC intra (pillow-heif, libheif + x265), 4:2:0"

    def available(self) -> bool:
        if pillow_heif is None:
            return False
        return "x265" in str(pillow_heif.libheif_info().get("encoders", {}))

    def version(self) -> str:
        info = pillow_heif.libheif_info()
        return f"pillow-heif {pillow_heif.__version__}, libheif {info.get('libheif')}, {info.get('HEIF')}"

    def encode_quality(self, image: Image.Image, quality: float) -> bytes:
        heif = pillow_heif.from_pillow(image)
        buf = io.BytesIO()
        heif.save(buf, quality=int(quality), chroma=420)
        return buf.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        try:
            heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
            return heif.to_pillow().convert("RGB")
        except Exception as exc:
            raise LearningError(f"{self.name}: corrupt or unreadable bitstream ({exc})") from exc
