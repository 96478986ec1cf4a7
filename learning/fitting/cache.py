"""Channel-distance vectors m(ref, distorted) of 2AFC triplets, computed once per unique image and cached.

2AFC data compare many distortions of the same reference (the site builds trials from pairs of stimuli of
one reference, and its export writes the same bytes wherever an image is shown), so images are identified
by content: image key = sha256(file bytes) (+ the crop with ``patch``). A triplet needs two pair vectors,
m(ref, p0) and m(ref, p1), keyed by sha256(ref key ‖ distorted key). Missing pairs are computed grouped
by reference, in backbone batches laid out reference-major: a reference judged against ten distortions
goes through the backbone once, not twenty times, and so does each distortion.

Cache layout: ``CACHE/<net>-<backbone sha256[:20]>/pairs-<sha>.pt``, each shard a dict of tensors ``keys``
(N×32 uint8 pair keys) and ``m`` (N×C float32). A refit computes only the pairs it has not seen.

The backbone runs wherever ``model`` is (``model.to(device)``); the vectors come back to the CPU, so
shards and results are CPU tensors whatever the device. Vectors computed on another device (or with
TF32 convolutions on CUDA) differ from CPU ones in the last float digits only, so the key ignores it.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from learning.data.bapps import Triplet, file_digest, read_image, to_tensor, triplet_crop
from learning.dpl.model import DPL
from learning.errors import LearningError

DEFAULT_CACHE = Path(os.environ.get("DPL_CACHE", Path.home() / ".cache" / "dpl-lab"))


class _Store:
    """The pair vectors of one cache folder: ``row`` maps a pair key to a row of ``m``."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.row: dict[bytes, int] = {}
        parts = []
        if folder is not None and folder.is_dir():
            for shard in sorted(folder.glob("pairs-*.pt")):
                try:
                    data = torch.load(shard, map_location="cpu", weights_only=True)
                    keys, m = data["keys"].numpy(), data["m"]
                except Exception:
                    continue  # a torn or foreign file is just a miss
                base = sum(len(p) for p in parts)
                self.row.update((k.tobytes(), base + i) for i, k in enumerate(keys))
                parts.append(m)
        self.m = torch.cat(parts) if parts else None

    def save(self, keys: list[bytes], m: torch.Tensor) -> None:
        if self.folder is None or not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        arr = torch.from_numpy(np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 32).copy())
        name = hashlib.sha256(b"".join(keys)).hexdigest()[:24]
        tmp = self.folder / f"tmp-{name}-{os.getpid()}.pt"
        torch.save({"keys": arr, "m": m.contiguous()}, tmp)
        os.replace(tmp, self.folder / f"pairs-{name}.pt")


def _decode(path: Path, crop: tuple[int, int] | None, patch: int | None) -> np.ndarray:
    img = read_image(path)
    if crop is not None and patch is not None:
        y, x = crop
        img = img[y:y + patch, x:x + patch]
    return img


def channel_vectors(model: DPL, triplets: list[Triplet], cache_dir: Path | None = DEFAULT_CACHE,
                    patch: int | None = None, seed: int = 0, batch_size: int = 64,
                    desc: str = "features", progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
    """N×C tensors m0 = m(ref, p0), m1 = m(ref, p1) for ``triplets``; returns (m0, m1, n_computed), the
    last being the number of triplets with a vector not found in the cache. One backbone batch holds at
    most ``3 × batch_size`` images. The backbone runs on ``model.device``; the results are CPU tensors."""
    device = model.device
    folder = None
    if cache_dir is not None:
        folder = Path(cache_dir) / f"{model.net}-{model.backbone.sha256()[:20]}"
    store = _Store(folder)

    # 1. content keys: images, then (ref, distorted) pairs
    source: dict[bytes, tuple[Path, tuple[int, int] | None]] = {}  # image key -> where to decode it
    pair_id: dict[bytes, int] = {}
    pairs: list[tuple[bytes, bytes, bytes]] = []  # (pair key, ref key, distorted key)
    rows = np.empty((len(triplets), 2), dtype=np.int64)
    for i, t in enumerate(tqdm(triplets, desc=f"{desc} (hashing)", unit="triplet", disable=not progress,
                               leave=False)):
        crop = triplet_crop(t, patch, seed) if patch else None
        tag = f"crop:{crop[0]},{crop[1]},{patch}".encode() if crop else b""
        keys = []
        for p in (t.ref, t.p0, t.p1):
            k = file_digest(p)
            if tag:
                k = hashlib.sha256(k + tag).digest()
            source.setdefault(k, (p, crop))
            keys.append(k)
        for j in (1, 2):
            pk = hashlib.sha256(keys[0] + keys[j]).digest()
            rows[i, j - 1] = pair_id.setdefault(pk, len(pairs))
            if rows[i, j - 1] == len(pairs):
                pairs.append((pk, keys[0], keys[j]))

    # 2. pairs found in the cache, and the missing ones grouped by reference
    C = sum(model.channels)
    vectors = torch.empty(len(pairs), C)
    hit_ids, hit_rows, missing = [], [], {}
    for n, (pk, rk, _) in enumerate(pairs):
        if pk in store.row:
            hit_ids.append(n)
            hit_rows.append(store.row[pk])
        else:
            missing.setdefault(rk, []).append(n)
    if hit_ids:
        vectors[torch.tensor(hit_ids)] = store.m[torch.tensor(hit_rows)]

    # 3. backbone batches of unique images: a reference and its distortions (split if too many)
    limit = max(2, 3 * batch_size)
    chunks: list[list[tuple[bytes, list[int]]]] = [[]]
    size = 0
    for rk, ids in missing.items():
        for s in range(0, len(ids), limit - 1):
            part = ids[s:s + limit - 1]
            if size and size + 1 + len(part) > limit:
                chunks.append([])
                size = 0
            chunks[-1].append((rk, part))
            size += 1 + len(part)

    def load(chunk: list[tuple[bytes, list[int]]]) -> dict[bytes, np.ndarray]:
        keys = dict.fromkeys(k for rk, ids in chunk for k in [rk] + [pairs[n][2] for n in ids])
        return {k: _decode(*source[k], patch) for k in keys}

    new_ids: list[int] = []
    bar = tqdm(total=sum(len(v) for v in missing.values()), desc=desc, unit="pair", disable=not progress,
               leave=False)
    with ThreadPoolExecutor(1) as pool:  # decode the next batch while the backbone runs on this one
        nxt = pool.submit(load, chunks[0]) if missing else None
        for c, chunk in enumerate(chunks if missing else []):
            imgs = nxt.result()
            if c + 1 < len(chunks):
                nxt = pool.submit(load, chunks[c + 1])
            by_shape: dict[tuple, list[tuple[bytes, list[int]]]] = {}
            for rk, ids in chunk:
                shape = imgs[rk].shape
                for n in ids:
                    got = imgs[pairs[n][2]].shape
                    if got != shape:
                        raise LearningError(
                            f"{source[rk][0].name}: images of different sizes in one triplet (reference "
                            f"{'×'.join(map(str, shape[:2]))}, {source[pairs[n][2]][0]} "
                            f"{'×'.join(map(str, got[:2]))})")
                by_shape.setdefault(shape, []).append((rk, ids))
            for groups in by_shape.values():
                # reference-major layout [ref, its images, next ref, ...] (see DPL.grouped_channel_distances)
                batch = [imgs[k] for rk, ids in groups for k in [rk] + [pairs[n][2] for n in ids]]
                with torch.inference_mode():
                    x = to_tensor(batch).to(device)
                    m = model.grouped_channel_distances(x, [1 + len(ids) for _, ids in groups]).cpu()
                ids = [n for _, part in groups for n in part]
                vectors[torch.tensor(ids)] = m
                new_ids.extend(ids)
                bar.update(len(ids))
    bar.close()
    if new_ids:
        idx = torch.tensor(new_ids)
        store.save([pairs[n][0] for n in new_ids], vectors[idx])
    computed = np.zeros(len(pairs), dtype=bool)
    computed[new_ids] = True
    r = torch.from_numpy(rows)
    return vectors[r[:, 0]], vectors[r[:, 1]], int(computed[rows].any(1).sum())
