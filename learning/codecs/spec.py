"""Codec settings as written on command lines: ``jpeg:10,30,50`` (qualities) or ``avif@0.25,0.5`` (bpp)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from learning.codecs.base import Encoded
from learning.codecs.ratecontrol import encode_at_bpp
from learning.codecs.registry import get_codec, get_codecs, is_checkpoint
from learning.errors import LearningError


@dataclass(frozen=True)
class Setting:
    """One codec setting: ``kind`` is ``"quality"`` or ``"bpp"``."""

    codec: str
    kind: str
    value: float

    def label(self) -> str:
        if self.kind == "quality":
            return f"{self.codec}:q{self.value:g}"
        return f"{self.codec}@{self.value:g}bpp"


def parse_codec_spec(spec: str) -> list[Setting]:
    """Parse ``NAME:Q1,Q2``, ``NAME@BPP1,BPP2`` or ``ckpt:PATH`` into settings; unknown codecs: error.

    ``ckpt:A.pt+B.pt`` / ``ckpt:DIR/*.pt`` give one setting per checkpoint (each its own rate point).
    """
    spec = spec.strip()
    if is_checkpoint(spec):  # learned-codec checkpoints: one rate point each, no quality setting
        return [Setting(codec.name, "quality", 0) for codec in get_codecs(spec)]  # loading validates each
    if "@" in spec:
        name, _, values, kind = *spec.partition("@"), "bpp"
    elif ":" in spec:
        name, _, values, kind = *spec.partition(":"), "quality"
    else:
        raise LearningError(f"codec spec {spec!r}: expected NAME:Q1,Q2 (qualities) or NAME@B1,B2 (bpp)")
    get_codec(name)  # validates the name and availability
    try:
        numbers = [float(v) for v in values.split(",") if v.strip()]
    except ValueError as exc:
        raise LearningError(f"codec spec {spec!r}: values must be numbers") from exc
    if not numbers:
        raise LearningError(f"codec spec {spec!r}: no values given")
    if kind == "bpp" and any(v <= 0 for v in numbers):
        raise LearningError(f"codec spec {spec!r}: bpp targets must be positive")
    return [Setting(name, kind, v) for v in numbers]


def encode_setting(image: Image.Image, setting: Setting) -> Encoded:
    """Encode ``image`` at one setting; bpp targets go through rate control."""
    codec = get_codec(setting.codec)
    if setting.kind == "quality":
        return codec.encode(image, setting.value)
    return encode_at_bpp(codec, image, setting.value).encoded
