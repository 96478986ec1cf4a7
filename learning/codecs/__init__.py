"""Codec registry: ``get_codec(name).encode(image, quality)``; see ``base`` for the interface."""

from learning.codecs.base import Codec, Encoded, bits_per_pixel, get_codec, register, registered_names

__all__ = ["Codec", "Encoded", "bits_per_pixel", "get_codec", "register", "registered_names"]
