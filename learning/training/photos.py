"""Build a codec training set of natural photographs from Debian packages (``python -m learning
training-photos``; ``build``).

The only image sources reachable here are the Debian, PyPI and npm registries, so the photos come from
Debian packages that ship photographic wallpapers (plus the astrophotographs of ``stellarium-data``):

1. ``apt-get download PKG`` (no install) into ``--cache`` (default ``var/cache/fetch_photos/``), then
   ``dpkg-deb -x`` next to it. Both steps are skipped when already done.
2. Candidates: JPEG/PNG/WebP files under the package's wallpaper folders (``PACKAGES``). A candidate is
   kept as a *photo* when (measured on a copy whose shorter side is 512 px):

   * its shorter side is >= 512 px (never upscaled), and it is RGB (not palette, grey or 1-bit) with
     < 1 % (semi-)transparent pixels — drawings and logos are usually palette/alpha PNGs;
   * it has >= ``MIN_COLOURS`` distinct colours after quantising to 6 bits per channel — flat
     drawings and renders have a few hundred;
   * at most ``MAX_FLAT`` of its 8×8 blocks are flat (grey std < 1) — vector-style renders have huge
     noise-free gradients or solid areas, photos have texture and sensor noise;
   * it is not in ``EXCLUDE`` (renders and drawings that pass the two tests, found by looking at them)
     or ``--exclude``.
3. Content deduplication: the same photo at several resolutions/aspects (Plasma ships up to 12) is
   recognised by the correlation (>= ``DUP_CORR``) of 24×24 grey thumbnails of centred square crops,
   compared across crop scales (so a 9:16 portrait crop matches its 16:9 parent); the largest version
   (pixels) is kept. Photos matching one of
   the 24 Kodak images (``--kodak``) are dropped, as are files named ``kodim*``.
4. Each photo is written as ``<package>__<stem>.png`` in ``--out`` (default ``var/photos/``, git-ignored),
   downscaled with Lanczos so that its shorter side is 512 px (this also hides JPEG artefacts).
   ``SOURCES.csv`` there records package, version, path in the package, sha256 of the original and the
   licence from ``usr/share/doc/<pkg>/copyright`` (the DEP-5 paragraph naming the file, else ``Files: *``).

Usage: python -m learning training-photos [--out var/photos] [--cache var/cache/fetch_photos]
       [--packages p1,p2] [--exclude GLOB ...] [--force]
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from learning.data.shared import KODAK_DIR

ROOT = Path(__file__).resolve().parents[2]

# Package -> globs (inside the package) of the wallpaper files to consider.
PACKAGES: dict[str, tuple[str, ...]] = {
    "plasma-workspace-wallpapers": ("usr/share/wallpapers/*",),
    "mate-backgrounds": ("usr/share/backgrounds/*",),
    "lomiri-wallpapers-16.04": ("usr/share/backgrounds/*",),
    "lomiri-wallpapers-20.04": ("usr/share/backgrounds/*",),
    "lxqt-themes": ("usr/share/lxqt/wallpapers/*",),
    "stellarium-data": ("usr/share/stellarium/nebulae/*",),
}
# Checked and left out: gnome-backgrounds (43: only patterns/renders), sway-backgrounds, xfdesktop4-data,
# desktop-base, lomiri-wallpapers, ukui-wallpapers (drawings/renders); gcompris-qt-data (images in .rcc).
# Renders/drawings that pass the heuristic (``package:path`` globs), found by looking at contact sheets.
_PLASMA_RENDERS = ("Autumn", "Canopee", "Cascade", "Elarun", "Honeywave", "Kay", "MilkyWay", "Opal", "Patak",
                   "SafeLanding", "Shell", "Volna")
EXCLUDE: tuple[str, ...] = (
    *(f"plasma-workspace-wallpapers:usr/share/wallpapers/{n}/*" for n in _PLASMA_RENDERS),
    "mate-backgrounds:*/abstract/*",
    "mate-backgrounds:*/desktop/*",
    "lomiri-wallpapers-20.04:*/Infinite-Sea_*",
    "lxqt-themes:*/triangles-logo.png",
)
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
SIDE = 512
MIN_COLOURS = 2000
MAX_FLAT = 0.6
HASH_SCALES = (1.0, 0.75, 9 / 16, 10 / 16, 0.5)
THUMB = 24
DUP_CORR = 0.95  # correlation of thumbnails above which two images are the same photo
CSV_FIELDS = ["file", "package", "version", "path", "sha256", "width", "height", "licence", "copyright"]


class FetchError(RuntimeError):
    """A failure reported to the user as one line."""


@dataclass
class Candidate:
    """An image file in an extracted package, with its measurements."""

    package: str
    version: str
    path: str  # inside the package
    file: Path
    sha256: str
    width: int
    height: int
    mode: str
    alpha: float
    colours: int
    flat: float
    hashes: np.ndarray

    @property
    def pixels(self) -> int:
        """Pixel count of the original."""
        return self.width * self.height


def run(cmd: list[str], cwd: Path | None = None) -> str:
    """Run a command, raising FetchError with its last stderr line on failure."""
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise FetchError(f"{cmd[0]} not found: this needs a Debian/Ubuntu system with apt and dpkg") from e
    if res.returncode:
        last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise FetchError(f"{' '.join(cmd)} failed: {last}")
    return res.stdout


def candidate_version(pkg: str) -> str:
    """The version ``apt-get download`` would fetch, running ``apt-get update`` once if unknown."""
    for attempt in range(2):
        out = run(["apt-cache", "policy", pkg])
        m = re.search(r"Candidate:\s*(\S+)", out)
        if m and m.group(1) != "(none)":
            return m.group(1)
        if attempt == 0:
            print("apt-get update (package lists missing or stale)…", file=sys.stderr)
            run(["apt-get", "update"])
    raise FetchError(f"package {pkg} not found in the apt sources (apt-cache policy {pkg})")


def fetch_package(pkg: str, cache: Path) -> tuple[str, Path]:
    """Download and extract one package (cached); return its version and extraction root."""
    version = candidate_version(pkg)
    debs, root = cache / "debs", cache / "extract" / f"{pkg}_{version.replace(':', '%3a')}"
    debs.mkdir(parents=True, exist_ok=True)
    done = root / ".extracted"
    if done.exists():
        return version, root
    deb_ver = version.replace(":", "%3a")
    found = sorted(debs.glob(f"{pkg}_{deb_ver}_*.deb"))
    if not found:
        # _apt cannot write into root-owned cache folders: download unsandboxed.
        run(["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", pkg], cwd=debs)
        found = sorted(debs.glob(f"{pkg}_{deb_ver}_*.deb"))
        if not found:
            raise FetchError(f"apt-get download {pkg} produced no {pkg}_{deb_ver}_*.deb in {debs}")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    run(["dpkg-deb", "-x", str(found[0]), str(root)])
    done.touch()
    return version, root


def thumb(gray: np.ndarray) -> bytes:
    """THUMB×THUMB box-filtered grey thumbnail of a 2-D uint8 array, as bytes."""
    return Image.fromarray(gray).resize((THUMB, THUMB), Image.BOX).tobytes()


def centre_hashes(gray: np.ndarray) -> list[str]:
    """Thumbnails (hex) of centred squares whose sides are HASH_SCALES of the shorter side."""
    h, w = gray.shape
    out = []
    for s in HASH_SCALES:
        side = max(THUMB, round(min(h, w) * s))
        y, x = (h - side) // 2, (w - side) // 2
        out.append(thumb(gray[y : y + side, x : x + side]).hex())
    return out


def as_vectors(hashes: list[str]) -> np.ndarray:
    """Zero-mean, unit-norm float vectors of thumbnails (one row per scale)."""
    v = np.stack([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hashes]).astype(np.float64)
    v -= v.mean(1, keepdims=True)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)


def open_reduced(path: Path, side: int) -> tuple[Image.Image, tuple[int, int], str]:
    """Open an image upright, JPEGs decoded at the coarsest DCT scale keeping the shorter side >= side.

    Returns the image, the original (upright) size and the original mode.
    """
    im = Image.open(path)
    mode, (w, h) = im.mode, im.size
    r = min(1.0, side / min(w, h))
    im.draft("RGB", (max(1, round(w * r)), max(1, round(h * r))))
    if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
        w, h = h, w
    return ImageOps.exif_transpose(im), (w, h), mode


def load_small(path: Path) -> tuple[Image.Image, tuple[int, int], str]:
    """Open an image; return an RGBA copy with shorter side SIDE (bilinear), the original size and mode."""
    im, size, mode = open_reduced(path, SIDE)
    im = im.convert("RGBA")
    s = SIDE / min(im.size)
    if s < 1:
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
    return im, size, mode


def measure(path: Path) -> dict:
    """Heuristic features of one image (see the module docstring)."""
    im, (w, h), mode = load_small(path)
    a = np.asarray(im)
    rgb = a[..., :3].astype(np.int32) >> 2
    colours = len(np.unique((rgb[..., 0] << 12) | (rgb[..., 1] << 6) | rgb[..., 2]))
    gray = a[..., :3].astype(np.float32).mean(2)
    gh, gw = gray.shape[0] // 8 * 8, gray.shape[1] // 8 * 8
    blocks = gray[:gh, :gw].reshape(gh // 8, 8, gw // 8, 8).std(axis=(1, 3))
    return {
        "width": w,
        "height": h,
        "mode": mode,
        "alpha": float((a[..., 3] < 250).mean()),
        "colours": colours,
        "flat": float((blocks < 1.0).mean()) if blocks.size else 1.0,
        "thumbs": centre_hashes(gray.astype(np.uint8)),
    }


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_photo(c: Candidate, excludes: list[str]) -> str:
    """Empty string if the candidate counts as a photo, else why not."""
    if min(c.width, c.height) < SIDE:
        return "too small"
    if c.mode not in ("RGB", "RGBA", "CMYK", "YCbCr"):
        return f"mode {c.mode}"
    if c.alpha > 0.01:
        return "transparent"
    if c.colours < MIN_COLOURS:
        return f"{c.colours} colours"
    if c.flat > MAX_FLAT:
        return f"flat {c.flat:.2f}"
    if "kodim" in Path(c.path).name.lower():
        return "Kodak name"
    key = f"{c.package}:{c.path}"
    if any(fnmatch.fnmatch(key, g) for g in excludes):
        return "excluded"
    return ""


def same_photo(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two thumbnail stacks show the same photo (a centred crop of one at a scale of the other)."""
    return bool((b @ a[0]).max() >= DUP_CORR or (a @ b[0]).max() >= DUP_CORR)


def dedupe(photos: list[Candidate]) -> tuple[list[Candidate], dict[str, list[Candidate]]]:
    """Keep the largest of each group of the same photo; return kept and {kept path: dropped}."""
    kept: list[Candidate] = []
    dropped: dict[str, list[Candidate]] = defaultdict(list)
    for c in sorted(photos, key=lambda c: (-c.pixels, c.package, c.path)):
        twin = next((k for k in kept if same_photo(k.hashes, c.hashes)), None)
        if twin is None:
            kept.append(c)
        else:
            dropped[f"{twin.package}:{twin.path}"].append(c)
    return kept, dropped


def stem_for(c: Candidate) -> str:
    """Output stem: the file stem, or the wallpaper's folder name when the stem is a resolution."""
    p = Path(c.path)
    stem = p.stem
    if re.fullmatch(r"\d+x\d+", stem) and "contents" in p.parts:
        i = p.parts.index("contents")
        stem = p.parts[i - 1] + ("-dark" if p.parts[i + 1].endswith("_dark") else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)


def parse_copyright(text: str) -> list[tuple[list[str], str, str]]:
    """DEP-5 ``Files`` paragraphs as (patterns, licence, copyright) in file order."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            if m and not line.startswith((" ", "\t")):
                key = m.group(1).lower()
                fields[key] = m.group(2)
            elif key:
                fields[key] += "\n" + line.strip()
        if "files" in fields and "license" in fields:
            pats = fields["files"].split()
            lic = fields["license"].splitlines()[0].strip()
            cop = " ".join(fields.get("copyright", "").split())
            out.append((pats, lic, cop))
    return out


def glob_match(pattern: str, path: str) -> bool:
    """DEP-5 glob match of a source-tree pattern against any tail of an installed path."""
    parts = path.split("/")
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return any(re.fullmatch(regex, "/".join(parts[i:])) for i in range(len(parts)))


def licence_for(pkg_root: Path, pkg: str, path: str, cache: dict) -> tuple[str, str]:
    """(licence, copyright) of a file from the package's copyright file."""
    if pkg not in cache:
        f = pkg_root / "usr/share/doc" / pkg / "copyright"
        cache[pkg] = parse_copyright(f.read_text(errors="replace")) if f.exists() else None
        if cache[pkg] is None:
            print(f"warning: {pkg} has no usr/share/doc/{pkg}/copyright", file=sys.stderr)
    paras = cache[pkg]
    if not paras:
        return "unknown (no DEP-5 copyright file)", ""
    name = Path(path).name
    best, best_score = None, -1
    for pats, lic, cop in paras:  # DEP-5: the last, most specific match wins
        for pat in pats:
            if pat == "*" or pat.startswith("debian/"):
                score = 0 if pat == "*" else -1
            elif glob_match(pat, path):
                score = 2
            elif "*" not in pat and Path(pat).name == name:
                score = 1  # the source tree lays files out differently (e.g. 16.04/x.jpg)
            else:
                score = -1
            if score >= 0 and score >= best_score:
                best, best_score = (lic, cop), score
    return best if best else ("unknown (no matching Files paragraph)", "")


def kodak_hashes(kodak: Path | None) -> list[tuple[str, np.ndarray]]:
    """Hashes of the Kodak images (both orientations), to keep them out of the training set."""
    if kodak is None or not kodak.is_dir():
        return []
    out = []
    for p in sorted(kodak.glob("kodim*.png")):
        g = np.asarray(Image.open(p).convert("L"))
        out += [(p.name, as_vectors(centre_hashes(g))),
                (p.name, as_vectors(centre_hashes(np.ascontiguousarray(g.T))))]
    return out


def default_kodak() -> Path | None:
    """The shared Kodak folder, if present."""
    return KODAK_DIR if KODAK_DIR.is_dir() else None


def write_png(src: Path, dst: Path) -> None:
    """Write src downscaled (Lanczos) to shorter side SIDE as an RGB PNG, atomically.

    Huge JPEGs are first decoded at a reduced DCT scale that keeps the shorter side >= 2*SIDE.
    """
    im = open_reduced(src, 2 * SIDE)[0].convert("RGB")
    s = SIDE / min(im.size)
    im = im.resize((max(SIDE, round(im.width * s)), max(SIDE, round(im.height * s))), Image.LANCZOS)
    tmp = dst.with_name(dst.stem + ".tmp.png")
    im.save(tmp, compress_level=6)
    tmp.replace(dst)


@contextlib.contextmanager
def large_images_allowed():
    """Pillow's decompression-bomb guard lifted for the wallpapers of signed Debian packages (some exceed its
    pixel limit), and put back afterwards: the rest of the process (the site, the tests) keeps the guard."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def build(out: Path, cache: Path, packages: list[str], exclude: list[str], kodak: Path | None,
          force: bool = False) -> int:
    """Fetch ``packages``, keep their photos and write them to ``out`` (see the module docstring); 0.
    FetchError says why not."""
    with large_images_allowed():
        return _build(out, cache, packages, exclude, kodak, force)


def _build(out: Path, cache: Path, packages: list[str], exclude: list[str], kodak: Path | None,
           force: bool) -> int:
    if ROOT in out.resolve().parents and not str(out.resolve()).startswith(str(ROOT / "var")):
        raise FetchError(f"--out {out} is inside the repository but not under var/: photos stay out")
    pkgs = [p for p in packages if p]
    unknown = [p for p in pkgs if p not in PACKAGES]
    if unknown:
        raise FetchError(f"unknown package(s) {unknown}; known: {', '.join(PACKAGES)}")
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise FetchError("apt-get/dpkg-deb not available: this needs a Debian/Ubuntu system")
    excludes = list(EXCLUDE) + exclude

    roots: dict[str, tuple[str, Path]] = {}
    for pkg in tqdm(pkgs, desc="packages", unit="pkg"):
        roots[pkg] = fetch_package(pkg, cache)

    feat_file = cache / "features.json"
    feats: dict[str, dict] = json.loads(feat_file.read_text()) if feat_file.exists() else {}
    files = []
    for pkg in pkgs:
        version, root = roots[pkg]
        for glob in PACKAGES[pkg]:
            for d in sorted(root.glob(glob)):
                paths = [d] if d.is_file() else sorted(d.rglob("*"))
                for f in paths:
                    if f.suffix.lower() in SUFFIXES and f.is_file() and not f.is_symlink():
                        files.append((pkg, version, root, f))
    cands: list[Candidate] = []
    for pkg, version, root, f in tqdm(files, desc="measuring", unit="img"):
        rel = f.relative_to(root).as_posix()
        digest = sha256(f)
        key = f"{digest}:{SIDE}:{THUMB}"
        if key not in feats:
            try:
                feats[key] = measure(f)
            except Exception as e:  # a broken file is skipped, not fatal
                print(f"skip {pkg}:{rel}: {e}", file=sys.stderr)
                continue
        m = feats[key]
        cands.append(
            Candidate(pkg, version, rel, f, digest, m["width"], m["height"], m["mode"], m["alpha"],
                      m["colours"], m["flat"], as_vectors(m["thumbs"]))
        )
    feat_file.parent.mkdir(parents=True, exist_ok=True)
    feat_file.write_text(json.dumps(feats))

    photos = [c for c in cands if not is_photo(c, excludes)]
    kodak = kodak_hashes(kodak)
    for c in list(photos):
        hit = next((n for n, h in kodak if same_photo(h, c.hashes)), None)
        if hit:
            print(f"drop {c.package}:{c.path}: matches Kodak {hit}", file=sys.stderr)
            photos.remove(c)
    kept, dropped = dedupe(photos)
    print(f"{len(files)} files, {len(photos)} photos by the heuristic, {len(kept)} after deduplication"
          + (f", checked against {len(kodak) // 2} Kodak images" if kodak else ", Kodak check skipped"))

    out.mkdir(parents=True, exist_ok=True)
    lic_cache: dict = {}
    rows, used = [], set()
    for c in sorted(kept, key=lambda c: (c.package, c.path)):
        name = f"{c.package}__{stem_for(c)}.png"
        while name in used:
            name = name[:-4] + "_" + Path(c.path).parent.name + ".png"
        used.add(name)
        lic, cop = licence_for(roots[c.package][1], c.package, c.path, lic_cache)
        rows.append({"file": name, "package": c.package, "version": c.version, "path": c.path,
                     "sha256": c.sha256, "width": c.width, "height": c.height, "licence": lic,
                     "copyright": cop})
    for r, c in tqdm(list(zip(rows, sorted(kept, key=lambda c: (c.package, c.path)))),
                     desc="writing", unit="img"):
        dst = out / r["file"]
        if force or not dst.exists():
            write_png(c.file, dst)
    stale = {p.name for p in out.glob("*__*.png") if p.name.split("__")[0] in PACKAGES} - used
    for n in sorted(stale):  # written by an earlier run with other settings
        print(f"removing {out / n}: no longer selected", file=sys.stderr)
        (out / n).unlink()
    with (out / "SOURCES.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)

    per: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        per[r["package"]].append(r)
    print(f"\n{'package':30} {'version':22} {'photos':>6}  licences")
    for pkg in pkgs:
        rs = per.get(pkg, [])
        lics = sorted({r["licence"] for r in rs})
        print(f"{pkg:30} {roots[pkg][0]:22} {len(rs):6d}  {', '.join(lics) or '-'}")
    size = sum((out / r["file"]).stat().st_size for r in rows)
    print(f"{'total':53} {len(rows):6d}  ({size / 2**20:.0f} MiB in {out})")
    return 0

