"""AVIF (AV1 intra) through Pillow's built-in AVIF support (Pillow ≥ 11.2 built with libavif)."""

from __future__ import annotations

from types import ModuleType

import PIL
from PIL import features

from learning.codecs.optional import OptionalLibraryCodec


class AVIF(OptionalLibraryCodec):
    name = "avif"
    quality_range = (0, 100)
    extension = "avif"
    description = "AVIF (Pillow/libavif), 4:2:0, speed 6"
    library = "PIL.AvifImagePlugin"  # Pillow older than 11.2 has no AVIF plugin
    requirement = "Pillow ≥ 11.2 built with libavif"
    pillow_format = "AVIF"
    speed = 6

    def works(self, module: ModuleType) -> bool:
        return bool(features.check("avif"))

    def version(self) -> str:
        return f"Pillow {PIL.__version__}, libavif {features.version('avif')}"

    def save_options(self, quality: float) -> dict:
        return {"quality": int(quality), "speed": self.speed, "subsampling": "4:2:0"}
