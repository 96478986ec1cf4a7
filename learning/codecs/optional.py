"""Codecs behind an optional library: the library is imported on first use, a machine without it
reports the codec unavailable (every other codec keeps working), and using it anyway is a LearningError
that names what to install.

A subclass states its differences only: the ``library`` module, the ``requirement`` to install, and either
the Pillow format and save options of its encoder (``pillow_format``, ``save_options``) or its own
``encode_quality``/``decode``; ``works`` adds a check beyond the import (e.g. an encoder compiled in).
"""

from __future__ import annotations

import importlib
import io
from importlib import metadata
from types import ModuleType

from PIL import Image

from learning.codecs.base import Codec, decode_with_pillow
from learning.errors import LearningError


class OptionalLibraryCodec(Codec):
    library: str = ""  # the module to import, e.g. "pillow_heif"
    distribution: str = ""  # its package on PyPI, for version(), e.g. "pillow-heif"
    pillow_format: str = ""  # Image.save's format name when the library plugs into Pillow

    def module(self) -> ModuleType | None:
        """The optional library, or None where it is not installed."""
        try:  # imported on use, not at the top: a missing library must leave the other codecs usable
            return importlib.import_module(self.library)
        except ImportError:
            return None

    def works(self, module: ModuleType) -> bool:
        """Whether the imported library can code here; the default trusts the import."""
        return True

    def available(self) -> bool:
        module = self.module()
        return module is not None and self.works(module)

    def require(self) -> ModuleType:
        """The library, or a LearningError naming what to install."""
        module = self.module()
        if module is None or not self.works(module):
            raise LearningError(f"codec {self.name!r} is not available on this machine: it needs "
                                f"{self.requirement}")
        return module

    def version(self) -> str:
        return f"{self.distribution} {metadata.version(self.distribution)}"

    def save_options(self, quality: float) -> dict:
        """Keyword arguments of ``Image.save`` for ``quality``."""
        raise NotImplementedError

    def encode_quality(self, image: Image.Image, quality: float) -> bytes:
        self.require()  # importing the library registers its format with Pillow
        buf = io.BytesIO()
        image.save(buf, self.pillow_format, **self.save_options(quality))
        return buf.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        self.require()
        return decode_with_pillow(data, self.name)
