"""Reader and writer for the BAPPS 2AFC layout.

A set is a folder ``SET/{ref,p0,p1}/NAME.png`` + ``SET/judge/NAME.npy`` (fraction of judges preferring p1),
optionally ``SET/judge_n/NAME.npy`` (number of judges, used for the human ceiling). Files are paired by
sorted stem. ``load_2afc`` accepts sets directly or parent folders holding sets (e.g. our site's export
``DIR/<split>`` containing ``<experiment>/``), and several folders at once. ``write_triplet`` writes one
entry of a set (the site's export builds its sets with it).
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from learning.errors import LearningError

if TYPE_CHECKING:
    import torch

IMAGE_DIRS = ("ref", "p0", "p1")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Triplet:
    ref: Path
    p0: Path
    p1: Path
    judge: float  # fraction of judges preferring p1
    n_judges: int | None = None


@dataclass
class TwoAFCSet:
    name: str
    root: Path
    triplets: list[Triplet] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.triplets)

    @property
    def judges(self) -> np.ndarray:
        return np.array([t.judge for t in self.triplets], dtype=np.float64)

    @property
    def n_judges(self) -> np.ndarray | None:
        if any(t.n_judges is None for t in self.triplets):
            return None
        return np.array([t.n_judges for t in self.triplets], dtype=np.int64)


def _is_set(path: Path) -> bool:
    return any((path / d).is_dir() for d in IMAGE_DIRS + ("judge",))


def _stems(folder: Path, exts: set[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    with os.scandir(folder) as it:  # scandir + string sort: thousands of files, no stat or Path per entry
        names = sorted(e.name for e in it if e.is_file())
    for name in names:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and f".{ext.lower()}" in exts:
            if stem in out:
                raise LearningError(f"{folder}: two files share the name {stem!r}")
            out[stem] = folder / name
    return out


_NPY_HEADERS: dict[bytes, tuple[np.dtype, int] | None] = {}


def _npy_header(header: bytes) -> tuple[np.dtype, int] | None:
    """(dtype, count) of a plain numeric C-order .npy header, else None (parsed once per distinct header)."""
    if header not in _NPY_HEADERS:
        try:
            d = ast.literal_eval(header.decode("latin1"))
            dtype = np.dtype(d["descr"])
            ok = (not d["fortran_order"] and dtype.kind in "biuf" and isinstance(d["shape"], tuple)
                  and all(isinstance(n, int) for n in d["shape"]))
            _NPY_HEADERS[header] = (dtype, int(np.prod(d["shape"]))) if ok else None
        except Exception:
            _NPY_HEADERS[header] = None
    return _NPY_HEADERS[header]


def _npy_fast(raw: bytes) -> np.ndarray | None:
    """The array of a plain v1.0 .npy file, or None for anything else (np.load then decides)."""
    if raw[:8] != b"\x93NUMPY\x01\x00" or len(raw) < 10:
        return None
    start = 10 + int.from_bytes(raw[8:10], "little")
    parsed = _npy_header(raw[10:start])
    if parsed is None or len(raw) - start != parsed[0].itemsize * parsed[1]:
        return None
    return np.frombuffer(raw, parsed[0], parsed[1], start)


def _read_scalar(path: Path, what: str) -> float:
    try:
        raw = path.read_bytes()
        # thousands of tiny files per set: skip np.load's per-file header parsing where possible
        arr = _npy_fast(raw)
        if arr is None:
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:
        raise LearningError(f"cannot read {what} file {path}: {type(exc).__name__}") from None
    arr = np.asarray(arr, dtype=np.float64).reshape(-1)
    if arr.size != 1:
        raise LearningError(f"{path}: expected one {what} value, found {arr.size}")
    return float(arr[0])


def read_set(root: Path, name: str | None = None) -> TwoAFCSet:
    """Read one 2AFC set folder (pairs files, validates judges; images are checked when loaded)."""
    root = Path(root)
    for sub in IMAGE_DIRS + ("judge",):
        if not (root / sub).is_dir():
            raise LearningError(f"{root}: missing subfolder {sub}/ (expected ref/, p0/, p1/, judge/)")
    files = {d: _stems(root / d, IMAGE_EXTS) for d in IMAGE_DIRS}
    files["judge"] = _stems(root / "judge", {".npy"})
    jn = _stems(root / "judge_n", {".npy"}) if (root / "judge_n").is_dir() else None
    names = sorted(files["ref"])
    if not names:
        raise LearningError(f"{root}: empty set (no images in ref/)")
    for sub, got in files.items():
        if sorted(got) != names:
            missing = sorted(set(names) - set(got))[:3]
            extra = sorted(set(got) - set(names))[:3]
            raise LearningError(
                f"{root}: {sub}/ does not match ref/ ({len(got)} vs {len(names)} files"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unexpected {', '.join(extra)}" if extra else "") + ")")
    if jn is not None and sorted(jn) != names:
        raise LearningError(f"{root}: judge_n/ does not match ref/ ({len(jn)} vs {len(names)} files)")
    triplets = []
    for stem in names:
        h = _read_scalar(files["judge"][stem], "judge")
        if not np.isfinite(h) or h < 0 or h > 1:
            raise LearningError(f"{files['judge'][stem]}: judge value {h} is not a fraction in [0, 1]")
        n = None
        if jn is not None:
            nf = _read_scalar(jn[stem], "judge count")
            if not np.isfinite(nf) or nf < 1 or nf != int(nf):
                raise LearningError(f"{jn[stem]}: judge count {nf} is not a positive integer")
            n = int(nf)
        triplets.append(Triplet(files["ref"][stem], files["p0"][stem], files["p1"][stem], h, n))
    return TwoAFCSet(name or root.name, root, triplets)


def load_2afc(dirs: list[str | Path] | str | Path) -> list[TwoAFCSet]:
    """Read every set under ``dirs`` (each a set or a folder of sets), in the given then sorted order."""
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    sets: list[TwoAFCSet] = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise LearningError(f"dataset folder not found: {d}")
        if _is_set(d):
            sets.append(read_set(d))
            continue
        children = [c for c in sorted(d.iterdir()) if c.is_dir() and _is_set(c)]
        if not children:
            raise LearningError(f"{d}: no 2AFC sets found (expected ref/, p0/, p1/, judge/ in it or in "
                                "its subfolders)")
        sets.extend(read_set(c, f"{d.name}/{c.name}") for c in children)
    return sets


def read_image(path: Path) -> np.ndarray:
    """H×W×3 uint8 RGB."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise LearningError(f"cannot read image {path}: {type(exc).__name__}") from None


def file_digest(path: Path) -> bytes:
    """sha256 of a file's bytes (the content key of an image)."""
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError as exc:
        raise LearningError(f"cannot read image {path}: {type(exc).__name__}") from None


def crop_corner(t: Triplet, patch: int, rng: np.random.Generator) -> tuple[int, int]:
    """A random ``patch``×``patch`` crop corner (y, x) inside the triplet's images, drawn from ``rng``;
    reads only the reference's header."""
    try:
        with Image.open(t.ref) as im:
            W, H = im.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise LearningError(f"cannot read image {t.ref}: {type(exc).__name__}") from None
    if H < patch or W < patch:
        raise LearningError(f"{t.ref}: image {H}×{W} is smaller than the {patch}×{patch} patch")
    return int(rng.integers(0, H - patch + 1)), int(rng.integers(0, W - patch + 1))


def triplet_rng(t: Triplet, seed: int) -> np.random.Generator:
    """The triplet's own seeded random stream (from its file names), so any subset of triplets gets the
    same crops."""
    digest = hashlib.sha256(f"{t.ref.name}|{t.p0.name}|{t.p1.name}|{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def triplet_crop(t: Triplet, patch: int, seed: int) -> tuple[int, int]:
    """The seeded random crop corner of a triplet: the one fit, tune and score all use."""
    return crop_corner(t, patch, triplet_rng(t, seed))


def triplet_key(t: Triplet, patch: int | None = None,
                rng: np.random.Generator | None = None) -> tuple[bytes, tuple[int, int] | None]:
    """Cache key (sha256 of the three files' bytes and the crop) and the crop corner, reading only
    the image headers. The crop is drawn from ``rng`` (default: seed 0) when ``patch`` is given."""
    h = hashlib.sha256()
    for p in (t.ref, t.p0, t.p1):
        h.update(file_digest(p))
    if patch is None:
        return h.digest(), None
    y, x = crop_corner(t, patch, rng or np.random.default_rng(0))
    h.update(f"crop:{y},{x},{patch}".encode())
    return h.digest(), (y, x)


def read_triplet(t: Triplet, patch: int | None = None,
                 crop: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three images as uint8 H×W×3 arrays (cropped at ``crop`` to ``patch``×``patch`` if given)."""
    imgs = [read_image(p) for p in (t.ref, t.p0, t.p1)]
    if not (imgs[0].shape == imgs[1].shape == imgs[2].shape):
        raise LearningError(f"{t.ref.name}: images of different sizes in one triplet "
                            f"({', '.join('×'.join(map(str, i.shape[:2])) for i in imgs)})")
    if patch is not None and crop is not None:
        y, x = crop
        imgs = [i[y:y + patch, x:x + patch] for i in imgs]
    return imgs[0], imgs[1], imgs[2]


def load_triplet(t: Triplet, patch: int | None = None,
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
    """The three images (uint8 H×W×3; cropped to ``patch``×``patch`` at one random place if given) and
    the cache key of ``triplet_key``."""
    key, crop = triplet_key(t, patch, rng)
    return (*read_triplet(t, patch, crop), key)


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """Stack uint8 H×W×3 arrays into an N×3×H×W float tensor in [0, 1]."""
    import torch  # here, so that the site's export (write_triplet) does not load torch

    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


def npy_bytes(value: float) -> bytes:
    """A judge file's bytes: float32 array of shape (1,) in .npy format."""
    buf = io.BytesIO()
    np.save(buf, np.array([value], dtype=np.float32))
    return buf.getvalue()


def write_triplet(write: Callable[[str, bytes], None], set_dir: str, name: str, ref: bytes, p0: bytes,
                  p1: bytes, judge: float, n_judges: int | None = None) -> None:
    """One entry ``name`` of the set ``set_dir`` as ``load_2afc`` reads it: ``{ref,p0,p1}/NAME.png`` (the
    encoded images as given), ``judge/NAME.npy`` (fraction of judges preferring p1) and, when known,
    ``judge_n/NAME.npy`` (number of judges). ``write(relative_path, data)`` stores each file."""
    for sub, data in (("ref", ref), ("p0", p0), ("p1", p1)):
        write(f"{set_dir}/{sub}/{name}.png", data)
    write(f"{set_dir}/judge/{name}.npy", npy_bytes(judge))
    if n_judges is not None:
        write(f"{set_dir}/judge_n/{name}.npy", npy_bytes(n_judges))
