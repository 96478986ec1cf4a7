"""Saliency maps of reference images: attach maps written by ``python -m learning saliency``, or compute them.

Maps are matched to references by file stem (the stem of the imported file's original name, or its
sha256). Every map is read and checked before anything is stored, so a bad file changes nothing, and the
maps are stored with their files in one transaction (a kill halfway changes nothing either).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from learning.errors import LearningError
from learning.saliency import check_rgb, get_saliency_model, load_map, save_map
from learning.saliency.table import overlay
from webapp.stimuli.ingest import IngestError, check_file_size
from webapp.stimuli.models import ReferenceImage, saliency_path
from webapp.stimuli.staging import staged_atomic

THUMB_WIDTH = 320


class SaliencyImportError(Exception):
    """User-facing error (one line); nothing was stored."""


def _png(saliency: np.ndarray) -> bytes:
    buf = io.BytesIO()
    save_map(saliency, buf)
    return buf.getvalue()


def _store(maps: dict[int, tuple[bytes, str]]) -> int:
    """Store the maps in one transaction with their files (``staging.staged_atomic``: all or nothing)."""
    with staged_atomic() as stage:
        for ref in ReferenceImage.objects.select_for_update().filter(pk__in=maps):
            png, model = maps[ref.pk]
            ref.saliency.name = stage.write(saliency_path(ref, ""), png)  # replaces the old map at commit
            ref.saliency_model = model[:100]
            ref.save(update_fields=["saliency", "saliency_model"])
    return len(maps)


def attach_maps(directory: str | Path, model: str, refs: list[ReferenceImage] | None = None) -> int:
    """Store the maps in ``directory`` (16- or 8-bit PNG, same stem as the image) on matching references.

    Returns how many references got a map. Raises SaliencyImportError if the folder has no maps, a map does
    not match exactly one reference, or a map is unreadable; then nothing is stored.
    """
    d = Path(directory)
    if not d.is_dir():
        raise SaliencyImportError(f"{d}: not a directory")
    files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() == ".png")
    if not files:
        raise SaliencyImportError(f"{d}: no .png saliency maps")
    refs = list(ReferenceImage.objects.all()) if refs is None else refs
    by_stem: dict[str, list[ReferenceImage]] = {}
    for ref in refs:
        for stem in {Path(ref.original_name).stem, ref.sha256}:
            by_stem.setdefault(stem, []).append(ref)
    maps: dict[int, tuple[bytes, str]] = {}
    for f in files:
        matches = by_stem.get(f.stem, [])
        if len(matches) != 1:
            what = "no reference image" if not matches else f"{len(matches)} reference images"
            raise SaliencyImportError(f"{f.name}: matches {what} (by original file name or sha256)")
        ref = matches[0]
        try:
            check_file_size(f)  # the byte cap of import_images, before the decoder reads anything
            saliency = load_map(f, (ref.width, ref.height))
        except (IngestError, LearningError) as exc:
            raise SaliencyImportError(str(exc)) from exc
        maps[ref.pk] = (_png(saliency), model)
    return _store(maps)


def compute_maps(refs: list[ReferenceImage], model_name: str, msroi_weights: str | None = None,
                 progress=None) -> int:
    """Compute and store a map for each reference with a ``learning.saliency`` model; returns the count."""
    try:
        model = get_saliency_model(model_name, msroi_weights=msroi_weights)
    except LearningError as exc:
        raise SaliencyImportError(str(exc)) from exc
    maps: dict[int, tuple[bytes, str]] = {}
    for ref in progress(refs) if progress else refs:
        with ref.file.open("rb") as fh, Image.open(fh) as im:
            image = check_rgb(im.convert("RGB"), ref.original_name)
        maps[ref.pk] = (_png(model.map(image)), model.name)
    return _store(maps)


def _thumbnail_png(image: Image.Image, width: int) -> bytes:
    """``image`` as PNG, scaled down to ``width`` pixels wide if wider."""
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def thumbnail(ref: ReferenceImage, width: int = THUMB_WIDTH) -> bytes:
    """A PNG of the reference itself, ``width`` pixels wide."""
    with ref.file.open("rb") as fh, Image.open(fh) as im:
        return _thumbnail_png(im.convert("RGB"), width)


def overlay_thumbnail(ref: ReferenceImage, width: int = THUMB_WIDTH) -> bytes:
    """A PNG of the reference blended with its colour-mapped saliency map, ``width`` pixels wide."""
    with ref.file.open("rb") as fh, Image.open(fh) as im:
        image = im.convert("RGB")
    with ref.saliency.open("rb") as fh:
        saliency = load_map(io.BytesIO(fh.read()), image.size)
    return _thumbnail_png(overlay(image, saliency), width)
