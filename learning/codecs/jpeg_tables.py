"""JPEG quantisation tables for a real-valued quality.

Integer qualities give exactly libjpeg's tables (the Annex-K tables scaled by its quality formula,
jcparam.c), i.e. Pillow's ``quality=``. Between two integer qualities n and n + 1 the tables move from one
to the other one unit at a time: of the S = Σ|T_n − T_{n+1}| unit steps, q = n + f takes the first ⌊f·S⌋,
dealt round-robin over the entries that still differ, in a fixed order (chroma before luma, highest
zig-zag frequency first). libjpeg's formula on a real-valued quality would move every entry with the same
base value at once (the 40-odd 99s of the chroma table jump together: bit-rate steps of 1.5–2 % near
quality 88) and, below 50, whole entries by tens of units; unit by unit, rate control lands within 1 %.
"""

from __future__ import annotations

import math

STD_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
            14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
            92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
STD_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
              47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32
_ZIGZAG_RANK = sorted(range(64), key=lambda i: (i // 8 + i % 8, i // 8 if (i // 8 + i % 8) % 2 else i % 8))
# (table, natural index) pairs in the order entries change between integer qualities
_ORDER = [(t, i) for t in (1, 0) for i in reversed(_ZIGZAG_RANK)]


def libjpeg_tables(quality: int) -> list[list[int]]:
    """libjpeg's quality→table scaling (jcparam.c) for an integer quality in [1, 100]."""
    q = min(100, max(1, int(quality)))
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return [[min(255, max(1, (v * scale + 50) // 100)) for v in table] for table in (STD_LUMA, STD_CHROMA)]


def qtables_for(quality: float) -> list[list[int]]:
    """Tables for a real-valued quality in [1, 100] (see module doc); integer → exactly libjpeg's."""
    q = min(100.0, max(1.0, float(quality)))
    lo = math.floor(q)
    tables = libjpeg_tables(lo)
    if q == lo:
        return tables
    upper = libjpeg_tables(lo + 1)
    steps = int((q - lo) * sum(abs(tables[t][i] - upper[t][i]) for t, i in _ORDER))
    while steps > 0:
        for t, i in _ORDER:
            if steps and tables[t][i] != upper[t][i]:
                tables[t][i] += 1 if upper[t][i] > tables[t][i] else -1
                steps -= 1
    return tables
