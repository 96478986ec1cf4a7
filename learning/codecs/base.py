"""The codec interface and the one codec registry.

Every codec family lives in its own module in this package and registers itself here. Images cross
this interface as ``PIL.Image.Image`` in RGB mode; bitstreams as ``bytes``. Bits per pixel are always
counted from the real bytes: ``8 * len(data) / (width * height)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image

from learning.errors import LearningError

if TYPE_CHECKING:
    import torch


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

    Subclasses set ``name``, ``quality_range`` (lowest, highest; higher = more bits), ``extension``
    and implement ``encode_quality``, ``decode`` and ``version``.
    """

    name: str = ""
    quality_range: tuple[float, float] = (1, 100)
    integer_quality: bool = True
    extension: str = "bin"
    description: str = ""

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


_REGISTRY: dict[str, Callable[[], Codec]] = {}


def register(name: str) -> Callable[[Callable[[], Codec]], Callable[[], Codec]]:
    """Class decorator / factory registration: ``@register("jpeg")``."""

    def wrap(factory: Callable[[], Codec]) -> Callable[[], Codec]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def registered_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_codec(name: str, require_available: bool = True,
              device: torch.device | None = None) -> Codec:
    """Return the codec registered under ``name``; a clear error when unknown or unavailable.

    ``ckpt:PATH`` names a learned codec checkpoint made by ``train-codec``; ``device`` (None: the CPU) is
    where its transforms run. Classical codecs ignore it.
    """
    _load_builtin()
    if name.startswith("ckpt:"):
        from learning.codecs.learned import LearnedCodec

        return LearnedCodec.from_checkpoint(name[len("ckpt:"):], device)
    if name not in _REGISTRY:
        raise LearningError(f"unknown codec {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    codec = _REGISTRY[name]()
    if require_available and not codec.available():
        raise LearningError(f"codec {name!r} is not available on this machine")
    return codec


def _load_builtin() -> None:
    # Import the codec modules so they register; a missing optional library only makes that codec
    # report itself unavailable, it never breaks the registry.
    import importlib

    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(f"learning.codecs.{module}")
        except ImportError:  # the module guards its own library; this is the last line of defence
            continue


_BUILTIN_MODULES = ("pillow_codecs", "jpeg2000", "avif", "heic", "jxl", "learned")


def describe_codecs() -> list[dict]:
    """Name, availability, library version and quality range of every registered codec."""
    rows = []
    for name in registered_names():
        codec = _REGISTRY[name]()
        ok = codec.available()
        try:
            version = codec.version() if ok else "-"
        except Exception as exc:  # a broken install is reported, not raised
            ok, version = False, f"broken: {exc}"
        rows.append({"name": name, "available": ok, "version": version,
                     "quality_range": codec.quality_range, "description": codec.description})
    return rows
