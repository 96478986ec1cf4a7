"""Per-triplet channel-distance vectors m(ref, p0), m(ref, p1), computed once and cached on disk.

Cache layout: ``CACHE/<net>-<backbone sha256[:20]>/shard-<sha>.pt``, each shard a dict of tensors
``keys`` (N×32 uint8: sha256 of the three image files + crop), ``m0``, ``m1`` (N×C float32). A refit
loads every shard of its backbone and computes only the triplets it has not seen.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from learning.data.bapps import Triplet, read_triplet, to_tensor, triplet_key
from learning.dpl.model import DPL

DEFAULT_CACHE = Path(os.environ.get("DPL_CACHE", Path.home() / ".cache" / "dpl-lab"))


def _crop_rng(t: Triplet, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{t.ref.name}|{t.p0.name}|{t.p1.name}|{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _load_shards(folder: Path) -> dict[bytes, tuple[torch.Tensor, torch.Tensor]]:
    index: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}
    if not folder.is_dir():
        return index
    for shard in sorted(folder.glob("shard-*.pt")):
        try:
            data = torch.load(shard, map_location="cpu", weights_only=True)
        except Exception:
            continue  # a torn or foreign file is just a miss
        for k, a, b in zip(data["keys"].numpy(), data["m0"], data["m1"]):
            index[k.tobytes()] = (a, b)
    return index


def channel_vectors(model: DPL, triplets: list[Triplet], cache_dir: Path | None = DEFAULT_CACHE,
                    patch: int | None = None, seed: int = 0, batch_size: int = 64,
                    desc: str = "features", progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
    """N×C tensors m0 = m(ref, p0), m1 = m(ref, p1) for ``triplets``; returns (m0, m1, n_computed)."""
    folder = None
    index: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}
    if cache_dir is not None:
        folder = Path(cache_dir) / f"{model.net}-{model.backbone.sha256()[:20]}"
        index = _load_shards(folder)
    C = sum(model.channels)
    m0 = torch.empty(len(triplets), C)
    m1 = torch.empty(len(triplets), C)
    new_keys, new_rows = [], []
    pending: list[tuple[int, bytes, np.ndarray, np.ndarray, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        by_shape: dict[tuple, list] = {}
        for item in pending:
            by_shape.setdefault(item[2].shape, []).append(item)
        for items in by_shape.values():
            ref, a, b = (to_tensor([it[j] for it in items]) for j in (2, 3, 4))
            with torch.inference_mode():
                v0, v1 = model.triplet_channel_distances(ref, a, b)
            for row, it in enumerate(items):
                m0[it[0]], m1[it[0]] = v0[row], v1[row]
                new_keys.append(it[1])
                new_rows.append(it[0])
        pending.clear()

    for i, t in enumerate(tqdm(triplets, desc=desc, unit="triplet", disable=not progress, leave=False)):
        key, crop = triplet_key(t, patch, _crop_rng(t, seed) if patch else None)
        if key in index:  # cache hit: the images are not even decoded
            m0[i], m1[i] = index[key]
            continue
        ref, a, b = read_triplet(t, patch, crop)
        pending.append((i, key, ref, a, b))
        if len(pending) >= batch_size:
            flush()
    flush()
    if folder is not None and new_keys:
        folder.mkdir(parents=True, exist_ok=True)
        rows = torch.tensor(new_rows)
        keys = torch.from_numpy(np.frombuffer(b"".join(new_keys), dtype=np.uint8).reshape(-1, 32).copy())
        name = hashlib.sha256(b"".join(new_keys)).hexdigest()[:24]
        tmp = folder / f"tmp-{name}-{os.getpid()}.pt"
        torch.save({"keys": keys, "m0": m0[rows].clone(), "m1": m1[rows].clone()}, tmp)
        os.replace(tmp, folder / f"shard-{name}.pt")
    return m0, m1, len(new_keys)
