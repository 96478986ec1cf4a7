"""The bytes participants receive: every image as an uncompressed PNG whose length is a function of its size.

A stored stimulus is a compressed PNG of the decoded image, so its length grows with the codec's quality
(the lossless original, the reference, is the largest): served as stored, the file size alone would
tell a worker which image of a trial is better. Participants are therefore sent a copy re-encoded with
no compression at all (zlib stored blocks, no ancillary chunks, 8-bit RGB): its length depends only on
width x height, so every image of a trial (and all images of that size) is the same number of bytes.

The copy is made once per stored file (``served_path``: written atomically under
``MEDIA_ROOT/served/``, named by a hash of the stored name, which never changes for a given content)
and then read from disk; ``make_stimuli`` writes the copies with the stimuli (``stage_served_copies``), so
the first participant's requests take no longer for one image than for another. Exports and analyses use
the stored files, unchanged.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.core.files.storage import default_storage
from django.db.models.fields.files import FieldFile
from PIL import Image, ImageCms

if TYPE_CHECKING:
    from webapp.stimuli.models import ReferenceImage
    from webapp.stimuli.staging import Stage

SERVED_DIR = "served"
FORMAT = "png-stored-rgb8-v1"  # part of the cache key: a change of encoding makes new copies
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STORED_BLOCK = 65535  # the most a deflate stored block holds


def to_plain_srgb(im: Image.Image) -> Image.Image:
    """RGB pixels in sRGB with no metadata: an embedded ICC profile is applied, then dropped.

    Every PNG shown to participants must look the same on the wire whatever made it: a profile (the JXL
    decoder attaches one, cameras do too) would both change how browsers render that one image and tell
    a participant which codec produced it. Raises ``ImageCms.PyCMSError`` for a broken profile.
    """
    icc = im.info.get("icc_profile")
    if icc:
        src = im if im.mode in ("RGB", "CMYK", "L") else im.convert("RGB")  # modes a profile describes
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        rgb = ImageCms.profileToProfile(src, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    else:
        rgb = im.convert("RGB")
    plain = Image.new("RGB", rgb.size)
    plain.paste(rgb)
    return plain


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def zlib_stored(data: bytes) -> bytes:
    """``data`` as a zlib stream of stored (uncompressed) deflate blocks; the length depends on len(data)
    only: 2 + 5 per started 65,535 bytes + len(data) + 4."""
    out = [b"\x78\x01"]
    view = memoryview(data)
    starts = range(0, len(data), STORED_BLOCK) if data else [0]
    for start in starts:
        block = view[start : start + STORED_BLOCK]
        final = start + STORED_BLOCK >= len(data)
        out.append(struct.pack("<BHH", int(final), len(block), len(block) ^ 0xFFFF))
        out.append(block)
    out.append(struct.pack(">I", zlib.adler32(data)))
    return b"".join(out)


def uncompressed_png(im: Image.Image) -> bytes:
    """An 8-bit RGB PNG of ``im`` with no compression and no ancillary chunks (IHDR, IDAT, IEND only)."""
    rgb = np.asarray(to_plain_srgb(im), dtype=np.uint8)
    height, width = rgb.shape[:2]
    rows = np.zeros((height, 1 + 3 * width), dtype=np.uint8)  # filter byte 0 (None) before each row
    rows[:, 1:] = rgb.reshape(height, 3 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, truecolour, no interlace
    return (PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib_stored(rows.tobytes()))
            + _chunk(b"IEND", b""))


def served_length(width: int, height: int) -> int:
    """The byte length of ``uncompressed_png`` for an image of this size."""
    raw = height * (1 + 3 * width)
    blocks = max(1, -(-raw // STORED_BLOCK))
    return len(PNG_SIGNATURE) + (12 + 13) + (12 + 2 + 5 * blocks + raw + 4) + 12


def served_name(name: str) -> str:
    """The served copy's name (relative to MEDIA_ROOT) of the stored file ``name``."""
    return f"{SERVED_DIR}/{hashlib.sha256(f'{FORMAT}:{name}'.encode()).hexdigest()}.png"


def _cache_name(f: FieldFile) -> str:
    return served_name(f.name)


def served_path(f: FieldFile) -> Path:
    """The served copy of the stored image ``f`` on disk, written on first use."""
    path = Path(default_storage.path(_cache_name(f)))
    if path.exists():
        return path
    with f.open("rb") as src, Image.open(src) as im:
        data = uncompressed_png(im)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
    try:
        os.fchmod(fd, 0o644)  # as the storage's own files, not mkstemp's 0600
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)  # atomic: a concurrent request sees no file or the whole file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def stage_served_copies(stage: Stage, refs: Sequence[ReferenceImage]) -> int:
    """Stage (``staging.Stage``) the missing served copies of these references and all their stimuli, so
    that they appear with the rows; how many files there are."""
    names = [n for ref in refs for n in (ref.file.name, *(s.decoded.name for s in ref.stimuli.all()))]
    for name in names:
        if not default_storage.exists(served_name(name)):
            with Image.open(io.BytesIO(stage.read(name))) as im:
                stage.write(served_name(name), uncompressed_png(im))
    return len(names)
