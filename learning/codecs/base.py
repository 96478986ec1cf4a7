"""The codec interface.

Every codec family lives in its own module in this package; ``registry`` lists them. Images cross this
interface as ``PIL.Image.Image`` in RGB mode; bitstreams as ``bytes``. Bits per pixel are always counted
from the real bytes: ``8 * len(data) / (width * height)``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from PIL import Image

from learning.errors import LearningError


def bits_per_pixel(data: bytes, size: tuple[int, int]) -> float:
    """8·bytes / (W·H) for an encoded bitstream of an image of ``size`` = (width, height)."""
    width, height = size
    return 8.0 * len(data) / float(width * height)


@dataclass(frozen=True)
class Encoded:
    """One encoding of an image: the exact bitstream and how it was made."""

    codec: str
    quality: float
    data: bytes
    bpp: float
    params: dict = field(default_factory=dict)


class Codec:
    """A codec family behind one interface.

    Subclasses set ``name`` (the one name users type, and the registry's key), ``quality_range``
    (lowest, highest; higher = more bits), ``extension`` and implement ``encode_quality``, ``decode`` and
    ``version``; ``requirement`` says what to install where ``available()`` is False.
    """

    name: str = ""
    quality_range: tuple[float, float] = (1, 100)
    integer_quality: bool = True
    extension: str = "bin"
    description: str = ""
    requirement: str = ""

    def available(self) -> bool:
        """True when the library behind this codec is importable and works here."""
        return True

    def version(self) -> str:
        raise NotImplementedError

    def encode_quality(self, image: Image.Image, quality: float) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> Image.Image:
        raise NotImplementedError

    def encode(self, image: Image.Image, quality: float) -> Encoded:
        """Encode at a quality setting and return the bitstream with its real bpp."""
        lo, hi = self.quality_range
        if not lo <= quality <= hi:
            raise LearningError(f"{self.name}: quality {quality} outside [{lo}, {hi}]")
        q = int(round(quality)) if self.integer_quality else float(quality)
        data = self.encode_quality(image.convert("RGB"), q)
        return Encoded(self.name, q, data, bits_per_pixel(data, image.size))


def decode_with_pillow(data: bytes, name: str) -> Image.Image:
    """Decode a bitstream of a format Pillow reads; a corrupt one is a LearningError naming codec ``name``."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.convert("RGB")
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise LearningError(f"{name}: corrupt or unreadable bitstream ({exc})") from exc
