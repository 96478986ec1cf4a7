"""Encode every image with every codec at every bpp target and measure each metric on the decoded image.

Classical codecs go through rate control (bpp from real bytes); learned checkpoints (``ckpt:PATH``) give
one point each (their rate is whatever the model spends). Unreachable targets are recorded with a note,
not dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from learning.codecs.base import get_codec
from learning.codecs.ratecontrol import encode_at_bpp
from learning.errors import LearningError


@dataclass
class Row:
    image: str
    codec: str  # curve label
    target_bpp: float | None
    achieved_bpp: float | None
    quality: float | None
    n_encodes: int
    metrics: dict = field(default_factory=dict)
    note: str = ""


def to_tensor(image: Image.Image) -> torch.Tensor:
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def codec_label(name: str) -> str:
    """Curve label: the codec name, or ``learned:<arch>/<loss>`` for checkpoints (λs share a curve)."""
    if not name.startswith("ckpt:"):
        return name
    from learning.training.checkpoint import load

    blob = load(name[5:])
    loss = str(blob["config"].get("loss", "?"))
    if loss.startswith("dpl:"):
        loss = "dpl"
    sal = "+saliency" if blob["config"].get("saliency") else ""
    return f"learned:{blob['arch']}/{loss}{sal}"


def run_rd(
    images: list[Path], codecs: list[str], bpps: list[float], metrics: list[str], progress: bool = True
) -> list[Row]:
    from learning.metrics import get_metric

    metric_fns = {m: get_metric(m) for m in metrics}
    codec_objs = {name: get_codec(name) for name in codecs}
    labels = {name: codec_label(name) for name in codecs}
    rows: list[Row] = []
    jobs = sum(1 if n.startswith("ckpt:") else len(bpps) for n in codecs) * len(images)
    bar = tqdm(total=jobs, desc="rd", disable=not progress)
    for path in images:
        try:
            with Image.open(path) as im:
                ref_img = im.convert("RGB")
        except Exception as exc:
            raise LearningError(f"cannot read image {str(path)!r} ({exc})") from exc
        ref = to_tensor(ref_img)
        for name, codec in codec_objs.items():
            cache: dict = {}
            targets = [None] if name.startswith("ckpt:") else bpps
            for target in targets:
                bar.set_postfix(image=path.stem, codec=labels[name], bpp=target)
                try:
                    if target is None:
                        enc, n = codec.encode(ref_img, 0), 1
                    else:
                        res = encode_at_bpp(codec, ref_img, target, cache=cache)
                        enc, n = res.encoded, res.n_encodes
                except LearningError as exc:
                    rows.append(Row(path.name, labels[name], target, None, None, 0, {}, str(exc)))
                    bar.update(1)
                    continue
                dec = to_tensor(codec.decode(enc.data))
                with torch.no_grad():
                    values = {m: float(fn(ref, dec)[0]) for m, fn in metric_fns.items()}
                rows.append(Row(path.name, labels[name], target, enc.bpp, enc.quality, n, values))
                bar.update(1)
    bar.close()
    return rows


def curves(rows: list[Row], metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per curve label: mean achieved bpp and mean metric per point, over images.

    A bpp target counts only when every image reached it, so all points average the same images.
    Learned checkpoints of one label are points keyed by their own (unique) rate order per image.
    """
    images = sorted({r.image for r in rows})
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label in sorted({r.codec for r in rows}):
        mine = [r for r in rows if r.codec == label]
        if label.startswith("learned:"):
            # one point per checkpoint: rows of an image appear in checkpoint order
            per_image = {im: [r for r in mine if r.image == im] for im in images}
            k = min(len(v) for v in per_image.values())
            pts = []
            for j in range(k):
                sel = [per_image[im][j] for im in images]
                if all(r.achieved_bpp is not None for r in sel):
                    pts.append(
                        (np.mean([r.achieved_bpp for r in sel]), np.mean([r.metrics[metric] for r in sel]))
                    )
        else:
            pts = []
            for t in sorted({r.target_bpp for r in mine}):
                sel = [r for r in mine if r.target_bpp == t]
                if len(sel) == len(images) and all(r.achieved_bpp is not None for r in sel):
                    pts.append(
                        (np.mean([r.achieved_bpp for r in sel]), np.mean([r.metrics[metric] for r in sel]))
                    )
        pts.sort()
        if pts:
            out[label] = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    return out
