"""JPEG XL through pillow-jxl-plugin (libjxl bindings that work with numpy < 2)."""

from __future__ import annotations

from learning.codecs.optional import OptionalLibraryCodec


class JXL(OptionalLibraryCodec):
    name = "jxl"
    quality_range = (0, 99)
    extension = "jxl"
    description = "JPEG XL lossy (pillow-jxl-plugin/libjxl), effort 7"
    library = "pillow_jxl"  # importing it registers the JXL format with Pillow
    distribution = requirement = "pillow-jxl-plugin"
    pillow_format = "JXL"
    effort = 7
    integer_quality = False  # libjxl maps a float quality to its butteraugli distance: rate control is fine

    def save_options(self, quality: float) -> dict:
        return {"quality": float(quality), "effort": self.effort, "lossless": False}
