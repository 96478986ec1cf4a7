"""Valid but unusual inputs: imported correctly or refused with one clear line, never silently damaged.

The rules (``webapp.stimuli.ingest.decode_for_import``): EXIF orientation is applied (the image as every
viewer shows it); 16-bit grayscale is scaled to 8 bits (v / 257), never clipped; alpha is accepted only
when every pixel is opaque; animated images are refused; decompression bombs are refused before decoding.
Odd file names are stored as readable text; the import writes nothing when it refuses. Experiment files
whose YAML aliases expand a few lines into gigabytes give a short error.
"""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image, ImageCms

MAX_MESSAGE = 600  # characters an error may echo


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def raw_png(width: int, height: int, depth: int, colour: int, rows: bytes, extra: bytes = b"") -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour or these huge headers)."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + extra + _chunk(b"IDAT", zlib.compress(rows, 9))
            + _chunk(b"IEND", b""))


def _rows(a: np.ndarray) -> bytes:
    a = a.astype(">u2") if a.dtype.itemsize == 2 else a  # PNG samples are big-endian
    return b"".join(b"\x00" + row.tobytes() for row in a)


def gradient16(h: int = 32, w: int = 32) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) * (65535 // (h * w - 1))).astype(">u2")


def import_one(folder: Path, name: str, data: bytes):
    """Write one file into ``folder`` and import the folder; the ReferenceImage and its stored pixels."""
    from webapp.stimuli.models import ReferenceImage

    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    call_command("import_images", str(folder))
    ref = ReferenceImage.objects.get()
    with ref.file.open("rb") as f:
        return ref, np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB")).astype(int)


def refused(folder: Path, name: str, data: bytes, media: Path) -> str:
    """Import one file that must be refused: the message (one short line); nothing stored."""
    from webapp.stimuli.models import ReferenceImage

    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    with pytest.raises(CommandError) as e:
        call_command("import_images", str(folder / name))  # the file itself: also names a .gif
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < MAX_MESSAGE, msg
    assert ReferenceImage.objects.count() == 0
    assert not [p for p in media.rglob("*") if p.is_file()]
    return msg


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_16bit_grayscale_is_scaled_not_clipped(db, media_root, tmp_path):
    g = gradient16()
    ref, px = import_one(tmp_path / "in", "g16.png", raw_png(32, 32, 16, 0, _rows(g)))
    want = np.round(g.astype(float) / 257).astype(int)
    assert np.abs(px[..., 0] - want).max() <= 1, (px[..., 0].min(), px[..., 0].max())
    assert px[..., 0].min() == 0 and px[..., 0].max() >= 254 and len(np.unique(px[..., 0])) > 200


def test_16bit_colour_keeps_its_levels(db, media_root, tmp_path):
    g = gradient16()
    rgb = np.stack([g, g[::-1], np.full_like(g, 40000)], axis=-1)
    _, px = import_one(tmp_path / "in", "c16.png", raw_png(32, 32, 16, 2, _rows(rgb)))
    assert np.abs(px - rgb.astype(float) / 257).max() <= 1.01


def test_16bit_grayscale_with_opaque_alpha(db, media_root, tmp_path):
    g = gradient16()
    la = np.stack([g, np.full_like(g, 65535)], axis=-1)
    _, px = import_one(tmp_path / "in", "la16.png", raw_png(32, 32, 16, 4, _rows(la)))
    assert np.abs(px[..., 1] - g.astype(float) / 257).max() <= 1.01


def test_exif_orientation_is_applied(db, media_root, tmp_path):
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    ref, px = import_one(tmp_path / "in", "rot.jpg", _encode(im, "JPEG", quality=95, exif=exif.tobytes()))
    assert (ref.width, ref.height) == (20, 40)
    assert px[5, 10, 2] > 200 and px[35, 10, 0] > 200  # blue on top once rotated, red below


def test_palette_image(db, media_root, tmp_path):
    im = Image.new("RGB", (16, 16), (10, 200, 30)).quantize(4)
    _, px = import_one(tmp_path / "in", "pal.png", _encode(im, "PNG"))
    assert tuple(px[0, 0]) == tuple(np.asarray(im.convert("RGB"))[0, 0])


def test_palette_with_transparency_is_refused(db, media_root, tmp_path):
    im = Image.new("P", (16, 16), 0)
    im.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    im.paste(1, (0, 0, 8, 16))
    msg = refused(tmp_path / "in", "pal_t.png", _encode(im, "PNG", transparency=0), media_root)
    assert "transparent" in msg


def test_gray_alpha_with_transparent_pixels_is_refused(db, media_root, tmp_path):
    la = Image.merge("LA", (Image.new("L", (16, 16), 128), Image.linear_gradient("L").resize((16, 16))))
    msg = refused(tmp_path / "in", "la.png", _encode(la, "PNG"), media_root)
    assert "transparent" in msg and "la.png" in msg


def test_opaque_rgba_is_imported(db, media_root, tmp_path):
    im = Image.new("RGBA", (16, 16), (1, 2, 3, 255))
    _, px = import_one(tmp_path / "in", "rgba.png", _encode(im, "PNG"))
    assert tuple(px[3, 3]) == (1, 2, 3)


def test_cmyk_jpeg(db, media_root, tmp_path):
    im = Image.new("RGB", (16, 16), (200, 30, 60)).convert("CMYK")
    _, px = import_one(tmp_path / "in", "cmyk.jpg", _encode(im, "JPEG", quality=100))
    assert np.abs(px[8, 8] - np.array([200, 30, 60])).max() <= 3


def test_srgb_icc_profile_is_applied_and_dropped(db, media_root, tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.new("RGB", (16, 16), (90, 120, 150))
    ref, px = import_one(tmp_path / "in", "icc.png", _encode(im, "PNG", icc_profile=srgb))
    assert np.abs(px[4, 4] - np.array([90, 120, 150])).max() <= 2
    with ref.file.open("rb") as f:
        assert "icc_profile" not in Image.open(f).info


def test_animated_gif_is_refused(db, media_root, tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert "3 frames" in refused(tmp_path / "in", "anim.gif", data, media_root)


def test_animated_png_is_refused(db, media_root, tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    data = _encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)
    assert "animated" in refused(tmp_path / "in", "anim.png", data, media_root)


def test_decompression_bomb_is_refused_quickly(db, media_root, tmp_path):
    side = 20000  # 400 megapixels of zeros: a few hundred kilobytes compressed
    rows = zlib.compress(b"\x00" * (side + 1) * 1000, 9)
    data = raw_png(side, side, 8, 0, b"")[:33] + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")
    t = time.monotonic()
    msg = refused(tmp_path / "in", "bomb.png", data, media_root)
    assert "decompression bomb" in msg and time.monotonic() - t < 10


@pytest.mark.parametrize("name", ["ünïcødé 图像.png", "with  spaces .png", "-leading-dash.png",
                                  "x" * 240 + ".png"])
def test_odd_file_names_are_imported(db, media_root, tmp_path, name):
    ref, _ = import_one(tmp_path / "in", name, _encode(Image.new("RGB", (12, 12), (5, 6, 7)), "PNG"))
    assert ref.original_name == name


def test_undecodable_file_name_is_imported_with_a_readable_name(db, media_root, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"caf\xe9-latin1.png")  # not UTF-8: a Latin-1 file system name
    with open(raw, "wb") as f:
        f.write(_encode(Image.new("RGB", (12, 12), (5, 6, 7)), "PNG"))
    call_command("import_images", str(folder))
    from webapp.stimuli.models import ReferenceImage

    ref = ReferenceImage.objects.get()
    assert ref.original_name == "caf\ufffd-latin1.png"
    assert ref.file.name == f"refs/{ref.sha256}.png"


def laughs(levels: int) -> str:
    """A YAML experiment file whose ``seed`` expands to 9**levels strings through aliases."""
    inner = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    inner += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "slug: laughs\ntitle: Laughs\nseed: [" + ", ".join(inner) + "]\n"


@pytest.mark.parametrize("field", ["seed", "slug", "mode", "sentinel_rate"])
def test_yaml_aliases_give_a_short_error(db, tmp_path, field):
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs(7).replace("seed:", f"{field}:") if field != "seed" else laughs(7))
    assert path.stat().st_size < 1000
    t = time.monotonic()
    with pytest.raises(CommandError) as e:
        call_command("create_experiment", str(path))
    assert len(str(e.value)) < MAX_MESSAGE and "\n" not in str(e.value)
    assert time.monotonic() - t < 10


def test_oversized_experiment_file_is_refused_unread(db, tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("slug: big\ntitle: Big\n# " + "x" * (2 * 1024 * 1024) + "\n")
    with pytest.raises(CommandError, match="over 1,048,576 bytes"):
        call_command("create_experiment", str(path))


# --- odd output paths: symbolic links -------------------------------------------------------------------

def test_export_into_a_symlinked_folder(live_experiment, tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    call_command("export_dataset", live_experiment.slug, out=str(tmp_path / "link"))
    assert (tmp_path / "link").is_symlink() and (target / "manifest.json").is_file()


def test_export_force_over_a_symlinked_split_folder_leaves_its_target_alone(live_experiment, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not the export's")
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / live_experiment.slug).symlink_to(elsewhere)
    call_command("export_dataset", live_experiment.slug, out=str(out), force=True)
    assert (elsewhere / "keep.txt").read_text() == "not the export's"
    assert (out / "manifest.json").is_file()


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_export_to_a_broken_symlink_is_one_clear_line(live_experiment, tmp_path, kind):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "missing" if kind == "dangling" else link)
    with pytest.raises(CommandError) as e:
        call_command("export_dataset", live_experiment.slug, out=str(link))
    assert "symbolic link" in str(e.value) and "\n" not in str(e.value) and len(str(e.value)) < MAX_MESSAGE
    assert link.is_symlink() and not (tmp_path / "missing").exists()
