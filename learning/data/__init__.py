"""Dataset readers (BAPPS 2AFC layout)."""

from learning.data.bapps import Triplet, TwoAFCSet, load_2afc

__all__ = ["Triplet", "TwoAFCSet", "load_2afc"]
