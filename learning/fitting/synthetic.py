"""A synthetic observer and the 2AFC datasets it judges, written in the BAPPS layout.

Patches are cut from real images (e.g. Kodak) and distorted by real codecs (Pillow JPEG and WebP at random
qualities; with ``mix`` also blur, noise, colour shifts). The observer has nonnegative ground-truth
channel weights on a given (random) backbone; each
of ``n_judges`` judges picks p1 with probability sigmoid((d0 − d1) / τ) (logistic noise), τ being
``noise`` × the spread of d0 − d1. judge/ holds the fraction choosing p1, judge_n/ the number of judges.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from learning.data.bapps import to_tensor, write_triplet
from learning.dpl.model import DPL


def truth_weights(channels: list[int], seed: int = 0, layers: tuple[int, ...] = (0,),
                  density: float = 0.1) -> list[torch.Tensor]:
    """Sparse, heavy-tailed nonnegative weights far from uniform: a ``density`` fraction of the channels of
    ``layers`` (log-normal magnitudes), zero elsewhere. With random backbones the layers are redundant, so
    uniform weights are a strong baseline; concentrating the truth on one layer keeps them measurably
    below it."""
    g = torch.Generator().manual_seed(seed)
    return [torch.exp(2.0 * torch.randn(c, generator=g)) * (torch.rand(c, generator=g) < density)
            * float(layer in layers) for layer, c in enumerate(channels)]


def _distort(img: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """A real codec (JPEG / WebP, random quality) or, with ``mix``, blur / noise / colour shift."""
    kind = rng.random()
    if kind < 0.2:
        return np.asarray(img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 2.0)))))
    if kind < 0.4:
        arr = np.asarray(img).astype(np.float32) + rng.normal(0, rng.uniform(2, 25), (*img.size[::-1], 3))
        return np.clip(arr + 0.5, 0, 255).astype(np.uint8)
    if kind < 0.5:
        arr = np.asarray(img).astype(np.float32) + rng.uniform(-25, 25, 3)
        return np.clip(arr + 0.5, 0, 255).astype(np.uint8)
    return _codec(img, rng)


def _codec(img: Image.Image, rng: np.random.Generator) -> np.ndarray:
    buf = io.BytesIO()
    if rng.random() < 0.5:
        img.save(buf, "JPEG", quality=int(rng.integers(5, 90)))
    else:
        img.save(buf, "WEBP", quality=int(rng.integers(0, 90)))
    buf.seek(0)
    with Image.open(buf) as out:
        return np.asarray(out.convert("RGB"))


def make_triplets(sources: list[Path], n: int, size: int = 64, seed: int = 0, mix: bool = True,
                  distortions: int | None = None,
                  pairs_per_ref: int | None = None) -> list[tuple[np.ndarray, ...]]:
    """``n`` (ref, p0, p1) uint8 patch triplets from random crops of ``sources``, distorted by codecs.

    Default: a fresh reference patch and two fresh distortions per triplet. With ``distortions`` D (and
    ``pairs_per_ref`` P, default all D·(D−1)/2), each reference patch gets D distorted versions and P of
    their pairs (sampled without replacement, sides shuffled) become triplets, as the site's experiments
    build trials; repeated images are the same array objects."""
    rng = np.random.default_rng(seed)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sources]
    f = _distort if mix else _codec

    def patch() -> np.ndarray:
        src = images[int(rng.integers(len(images)))]
        y, x = int(rng.integers(0, src.shape[0] - size + 1)), int(rng.integers(0, src.shape[1] - size + 1))
        return np.ascontiguousarray(src[y:y + size, x:x + size])

    out: list[tuple[np.ndarray, ...]] = []
    if distortions is None:
        for _ in range(n):
            ref = patch()
            pil = Image.fromarray(ref)
            out.append((ref, f(pil, rng), f(pil, rng)))
        return out
    if distortions < 2 or (pairs_per_ref is not None and pairs_per_ref < 1):
        raise ValueError("need distortions >= 2 and pairs_per_ref >= 1")
    all_pairs = [(i, j) for i in range(distortions) for j in range(i + 1, distortions)]
    per_ref = min(pairs_per_ref or len(all_pairs), len(all_pairs))
    while len(out) < n:
        ref = patch()
        pil = Image.fromarray(ref)
        dist = [f(pil, rng) for _ in range(distortions)]
        for k in rng.permutation(len(all_pairs))[:min(per_ref, n - len(out))]:
            i, j = all_pairs[k] if rng.random() < 0.5 else all_pairs[k][::-1]
            out.append((ref, dist[i], dist[j]))
    return out


@torch.inference_mode()
def judge(observer: DPL, triplets: list[tuple[np.ndarray, ...]], n_judges: int = 5, noise: float = 0.1,
          seed: int = 0, batch_size: int = 128,
          tau: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Judge fractions h, true distance pairs (N×2), and τ (pass ``tau`` to reuse one across splits).
    Each distinct (ref, distorted) pair of array objects is measured once."""
    pair_of: dict[tuple[int, int], int] = {}
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    rows = np.empty((len(triplets), 2), dtype=np.int64)
    for i, t in enumerate(triplets):
        for j in (1, 2):
            k = pair_of.setdefault((id(t[0]), id(t[j])), len(pairs))
            if k == len(pairs):
                pairs.append((t[0], t[j]))
            rows[i, j - 1] = k
    d = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        d.append(observer(to_tensor([p[0] for p in chunk]), to_tensor([p[1] for p in chunk])))
    dist = torch.cat(d).double().numpy()[rows]
    if tau is None:
        tau = float(noise * np.std(dist[:, 0] - dist[:, 1]))
    p1 = 1 / (1 + np.exp(-(dist[:, 0] - dist[:, 1]) / tau))
    k = np.random.default_rng(seed).binomial(n_judges, p1)
    return k / n_judges, dist, tau


def write_bapps(root: Path, triplets: list[tuple[np.ndarray, ...]], h: np.ndarray,
                n_judges: int | None = None) -> Path:
    """Write one set: ``root/{ref,p0,p1}/NNNNNN.png``, ``judge/NNNNNN.npy`` (and ``judge_n/``), with the
    writer of the site's export (``learning.data.bapps.write_triplet``); an image shown in several triplets
    is written to each (same bytes, encoded once)."""
    root = Path(root)
    encoded: dict[int, tuple[np.ndarray, bytes]] = {}

    def write(rel: str, data: bytes) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)

    def png(img: np.ndarray) -> bytes:
        if id(img) not in encoded:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "PNG", compress_level=1)
            encoded[id(img)] = (img, buf.getvalue())  # keep img alive so its id stays unique
        return encoded[id(img)][1]

    for i, (t, hi) in enumerate(zip(triplets, h)):
        write_triplet(write, ".", f"{i:06d}", *(png(img) for img in t), hi, n_judges or None)
    return root


def make_dataset(root: Path, sources: list[Path], net: str = "alex", backbone_seed: int = 0,
                 n_train: int = 1000, n_val: int = 400, size: int = 64, n_judges: int = 5,
                 noise: float = 0.1, seed: int = 0, mix: bool = True, distortions: int | None = None,
                 pairs_per_ref: int | None = None) -> dict:
    """Write ``root/train/synth`` and ``root/val/synth`` (val patches from the second half of ``sources``,
    so no reference image is shared); return truth weights, τ, and the true-weight val distances.
    ``distortions`` / ``pairs_per_ref``: see ``make_triplets``."""
    observer = DPL(net, backbone=None, seed=backbone_seed)
    observer.set_weights(truth_weights(observer.channels, seed))
    half = max(1, len(sources) // 2)
    tr = make_triplets(sources[:half], n_train, size, seed, mix, distortions, pairs_per_ref)
    va = make_triplets(sources[half:] or sources, n_val, size, seed + 1, mix, distortions, pairs_per_ref)
    h_tr, d_tr, tau = judge(observer, tr, n_judges, noise, seed)
    h_va, d_va, _ = judge(observer, va, n_judges, noise, seed + 1, tau=tau)
    write_bapps(Path(root) / "train" / "synth", tr, h_tr, n_judges)
    write_bapps(Path(root) / "val" / "synth", va, h_va, n_judges)
    return {"observer": observer, "tau": tau, "val_dist": d_va, "val_h": h_va, "train_dist": d_tr,
            "train_h": h_tr, "train": tr, "val": va}
