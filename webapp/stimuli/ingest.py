"""Importing reference images (validate everything, then import in one transaction) and making stimuli."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from django.conf import settings
from PIL import Image, ImageOps

from learning.codecs import get_codec
from learning.codecs.spec import Setting, encode_setting
from learning.metrics import get_metric
from webapp.stimuli.models import ReferenceImage, Stimulus, reference_path, stimulus_path
from webapp.stimuli.served import to_plain_srgb
from webapp.stimuli.staging import Stage, staged_atomic

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}
DEFAULT_MAX_IMAGE_BYTES = 64 * 1024 * 1024  # when settings.STIMULI_MAX_IMAGE_BYTES is not set
MIN_STIMULUS_SIDE = 11  # make_stimuli scores every stimulus with SSIM (an 11-pixel window)


class IngestError(Exception):
    """User-facing import error (one line)."""


@dataclass
class Checked:
    path: Path
    sha256: str
    png: bytes
    size: tuple[int, int]


def split_for(sha256: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """Deterministic split from the content hash and a seed (same image -> same split)."""
    h = int(hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()[:12], 16) / float(16**12)
    if h < test_fraction:
        return "test"
    if h < test_fraction + val_fraction:
        return "val"
    return "train"


def max_image_bytes() -> int:
    """The largest image file accepted, in bytes (``settings.STIMULI_MAX_IMAGE_BYTES``)."""
    return int(getattr(settings, "STIMULI_MAX_IMAGE_BYTES", DEFAULT_MAX_IMAGE_BYTES))


def _too_big(path: Path, size: str, limit: int) -> IngestError:
    return IngestError(
        f"{path}: file is {size} bytes, over the {limit:,}-byte limit (STIMULI_MAX_IMAGE_BYTES)"
    )


def check_file_size(path: Path) -> None:
    """IngestError naming the file and the limit when ``path`` is over :func:`max_image_bytes` (from its
    size on disk; nothing is read)."""
    limit = max_image_bytes()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if size > limit:
        raise _too_big(path, f"{size:,}", limit)


def read_image_bytes(path: Path) -> bytes:
    """The bytes of one image file, refusing (IngestError naming the file and the limit) a file over
    :func:`max_image_bytes` from its size before reading, and never reading more than limit + 1 bytes
    (a file that grows meanwhile is refused too). Unreadable files are IngestErrors as well."""
    limit = max_image_bytes()
    check_file_size(path)
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if len(data) > limit:
        raise _too_big(path, f"more than {limit:,}", limit)
    return data


def _bounded(text: object, limit: int = 200) -> str:
    """``text`` as one line of at most ``limit`` characters (messages echo decoder text)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _high_depth_to_8bit(im: Image.Image) -> Image.Image:
    """A 16-bit (or 32-bit integer) grayscale image as 8-bit ``L``, scaled (v / 257), never clipped."""
    a = np.asarray(im).astype(np.int64)
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise IngestError("integer samples outside 0..65535 (not a 16-bit image)")
    return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), mode="L")


def _opaque(im: Image.Image) -> Image.Image:
    """``im`` without its alpha channel (or palette/tRNS transparency) when every pixel is opaque."""
    if im.mode in ("P", "L", "RGB") and "transparency" not in im.info:
        return im
    if im.mode not in ("RGBA", "LA", "PA", "La", "RGBa", "P", "L", "RGB"):
        return im
    rgba = im.convert("RGBA")
    if int(np.asarray(rgba)[..., 3].min(initial=255)) < 255:
        raise IngestError("has transparent pixels (alpha); flatten it onto a background first")
    mode = "RGB" if im.mode not in ("LA", "La", "L") else "L"
    flat = rgba.convert(mode)
    flat.info = {k: v for k, v in im.info.items() if k != "transparency"}
    return flat


def decode_for_import(im: Image.Image) -> Image.Image:
    """The 8-bit sRGB image a file shows, or IngestError: one frame only; EXIF orientation applied (the image
    as viewers show it); 16-bit grayscale scaled to 8 bits (16-bit colour keeps its high byte); alpha
    allowed only when fully opaque; an ICC profile (RGB, grayscale or CMYK) converted to sRGB."""
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        raise IngestError(f"animated image ({frames} frames); import a single frame as a still image")
    if im.mode == "F" or (im.mode.startswith("I;16") and im.mode not in ("I;16", "I;16B", "I;16L")):
        raise IngestError(f"unsupported pixel format {im.mode}")
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I", "I;16", "I;16B", "I;16L"):
        info = im.info
        im = _high_depth_to_8bit(im)
        im.info = dict(info)
    im = _opaque(im)
    return to_plain_srgb(im)


def check_image(path: Path) -> Checked:
    """Read and fully decode one image file; IngestError naming the file when it is not a usable image
    (too many bytes, too many pixels, unreadable, or valid but not importable unchanged:
    :func:`decode_for_import`). Messages are one line, decoder text bounded."""
    data = read_image_bytes(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                rgb = decode_for_import(im)
    except IngestError as exc:
        raise IngestError(f"{path}: {exc}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise IngestError(f"{path}: image too large (decompression bomb guard): {_bounded(exc)}") from exc
    except Exception as exc:  # Pillow raises many types for broken files
        what = f"{exc.__class__.__name__}: {_bounded(exc)}"
        raise IngestError(f"{path}: not a readable image ({what})") from exc
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    return Checked(path, hashlib.sha256(data).hexdigest(), buf.getvalue(), rgb.size)


def storable_name(path: Path) -> str:
    """The file name as text PostgreSQL can store (undecodable bytes replaced), at most 255 characters."""
    raw = os.fsencode(path.name)
    return raw.decode("utf-8", errors="replace").replace("\x00", "")[:255]


def import_images(
    files: list[Path],
    source: str = "",
    licence: str = "",
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> tuple[int, int]:
    """Validate all files first, then import them in one transaction with their files
    (``staging.staged_atomic``: a failure or a kill leaves nothing). Returns (created, already present)."""
    checked = [check_image(p) for p in files]
    created = existing = 0
    with staged_atomic() as stage:
        seen: set[str] = set()
        for c in checked:
            if c.sha256 in seen or ReferenceImage.objects.filter(sha256=c.sha256).exists():
                existing += 1
                continue
            seen.add(c.sha256)
            ref = ReferenceImage(
                sha256=c.sha256,
                original_name=storable_name(c.path),
                source=source,
                licence=licence,
                width=c.size[0],
                height=c.size[1],
                split=split_for(c.sha256, seed, val_fraction, test_fraction),
            )
            ref.file.name = stage.write(reference_path(ref, ""), c.png)
            ref.save()
            created += 1
    return created, existing


def _tensor(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def setting_key(setting: Setting) -> str:
    return f"{setting.kind}={setting.value:g}"


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def original_stimulus(ref: ReferenceImage, stage: Stage) -> Stimulus:
    """The lossless reference as a stimulus (used by sentinel and practice trials); its file is staged."""
    found = Stimulus.objects.filter(reference=ref, codec="original", setting_key="original").first()
    if found:
        return found
    with ref.file.open("rb") as f:
        data = f.read()
    s = Stimulus(
        reference=ref,
        codec="original",
        codec_version="",
        params={},
        setting_key="original",
        bpp=8.0 * len(data) / (ref.width * ref.height),
        encoded=data,
        encoded_sha256=hashlib.sha256(data).hexdigest(),
        psnr=None,
        ssim=1.0,
    )
    s.decoded.name = stage.write(stimulus_path(s, ""), data)
    s.save()
    return s


def make_stimulus(ref: ReferenceImage, setting: Setting, stage: Stage) -> tuple[Stimulus, bool]:
    """Encode ``ref`` at ``setting`` (exact bytes, bpp, decoded PNG, PSNR, SSIM); (stimulus, created).
    The decoded PNG is staged (``staging.Stage``): it appears when the caller's transaction commits."""
    key = setting_key(setting)
    found = Stimulus.objects.filter(reference=ref, codec=setting.codec, setting_key=key).first()
    if found:
        return found, False
    with ref.file.open("rb") as f:
        image = Image.open(io.BytesIO(f.read())).convert("RGB")
    codec = get_codec(setting.codec)
    enc = encode_setting(image, setting)
    decoded = to_plain_srgb(codec.decode(enc.data))
    x, y = _tensor(image), _tensor(decoded)
    psnr = float(get_metric("psnr")(x, y)[0])
    ssim = float(get_metric("ssim")(x, y)[0])
    s = Stimulus(
        reference=ref,
        codec=setting.codec,
        codec_version=codec.version(),
        params={"kind": setting.kind, "value": setting.value, **enc.params},
        setting_key=key,
        quality=float(enc.quality) if setting.kind == "quality" else None,
        target_bpp=setting.value if setting.kind == "bpp" else None,
        bpp=enc.bpp,
        encoded=enc.data,
        encoded_sha256=hashlib.sha256(enc.data).hexdigest(),
        psnr=psnr if np.isfinite(psnr) else None,
        ssim=ssim,
    )
    s.decoded.name = stage.write(stimulus_path(s, ""), _png(decoded))
    s.save()
    return s, True
