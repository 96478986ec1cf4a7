"""HEIC (HEVC intra, the practical stand-in for BPG) through pillow-heif with libheif + x265."""

from __future__ import annotations

import io
from types import ModuleType

from PIL import Image

from learning.codecs.optional import OptionalLibraryCodec
from learning.errors import LearningError


class HEIC(OptionalLibraryCodec):
    """pillow-heif's own API (not its Pillow plugin): ``from_pillow``/``open_heif``."""

    name = "heic"
    quality_range = (0, 100)
    extension = "heic"
    description = "HEIC/HEVC intra (pillow-heif, libheif + x265), 4:2:0"
    library = "pillow_heif"
    requirement = "pillow-heif with libheif's x265 encoder"

    def works(self, module: ModuleType) -> bool:
        return "x265" in str(module.libheif_info().get("encoders", {}))

    def version(self) -> str:
        pillow_heif = self.require()
        info = pillow_heif.libheif_info()
        return f"pillow-heif {pillow_heif.__version__}, libheif {info.get('libheif')}, {info.get('HEIF')}"

    def encode_quality(self, image: Image.Image, quality: float) -> bytes:
        heif = self.require().from_pillow(image)
        buf = io.BytesIO()
        heif.save(buf, quality=int(quality), chroma=420)
        return buf.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        pillow_heif = self.require()
        try:
            heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
            return heif.to_pillow().convert("RGB")
        except Exception as exc:
            raise LearningError(f"{self.name}: corrupt or unreadable bitstream ({exc})") from exc
