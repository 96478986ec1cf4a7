"""Deep perceptual loss: ``DPL`` module, backbones and weight files."""

from learning.dpl.model import DPL

__all__ = ["DPL"]
