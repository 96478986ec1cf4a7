"""Codecs behind one interface: ``get_codec(name).encode(image, quality)``.

``base`` holds the interface, ``registry`` the names (and ``ckpt:`` learned codecs), ``spec`` the
command-line settings, ``ratecontrol`` the encoding at a target bpp; one module per codec family.
"""

from learning.codecs.base import Codec, Encoded, bits_per_pixel
from learning.codecs.registry import describe_codecs, get_codec, get_codecs, register, registered_names

__all__ = ["Codec", "Encoded", "bits_per_pixel", "describe_codecs", "get_codec", "get_codecs", "register",
           "registered_names"]
