"""Encode every image with every codec at every bpp target and measure each metric on the decoded image.

Classical codecs go through rate control (bpp from real bytes). A learned codec has no quality knob: each
checkpoint gives one point per image at its own (native) rate, and the checkpoints of one ``ckpt:`` entry
(``ckpt:A.pt+B.pt+C.pt`` or ``ckpt:DIR/*.pt``, one per λ) form one curve. Their rows carry the checkpoint
and leave the bpp target blank. Unreachable targets are recorded with a note, not dropped silently.
``device``: where the checkpoints' transforms and the deep metrics run (None: the CPU; entropy coding is
always on the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from learning.codecs.base import Codec
from learning.codecs.ratecontrol import encode_at_bpp
from learning.codecs.registry import get_codecs, is_checkpoint
from learning.errors import LearningError
from learning.metrics import get_metric


@dataclass
class Row:
    image: str
    codec: str  # curve label
    target_bpp: float | None  # None for learned checkpoints (native rate)
    achieved_bpp: float | None
    quality: float | None
    n_encodes: int
    metrics: dict = field(default_factory=dict)
    note: str = ""
    checkpoint: str = ""  # the checkpoint behind a learned point ("" for classical codecs)


@dataclass
class Curve:
    """One curve of the R–D plot: a classical codec (rate-targeted) or a set of learned checkpoints."""

    label: str
    codecs: list[Codec]
    checkpoints: list[str] = field(default_factory=list)  # one per codec for learned curves, else empty

    @property
    def learned(self) -> bool:
        return bool(self.checkpoints)


def to_tensor(image: Image.Image) -> torch.Tensor:
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def resolve_curves(entries: list[str], device: torch.device | None = None) -> list[Curve]:
    """``--codecs`` entries → curves, loading every codec and checkpoint first (errors before any work).

    A classical name is one curve. A ``ckpt:`` entry is one curve labelled ``learned:<arch>/<loss>``;
    its checkpoints must share that label. Two ``ckpt:`` entries with the same label get ``#2``, ``#3``
    appended; a classical codec listed twice is an error. Checkpoints are loaded onto ``device`` (None: the
    CPU).
    """
    curves: list[Curve] = []
    labels: set[str] = set()
    for entry in entries:
        entry = entry.strip()
        codecs = get_codecs(entry, device)
        if is_checkpoint(entry):
            paths = [c.path for c in codecs]
            kinds = {c.curve_label() for c in codecs}
            if len(kinds) > 1:
                detail = ", ".join(f"{p}: {c.curve_label()}" for p, c in zip(paths, codecs, strict=True))
                raise LearningError(
                    f"the checkpoints of one curve must share architecture and loss ({detail}); "
                    "list them as separate ckpt: entries"
                )
            label = base = kinds.pop()
            n = 1
            while label in labels:
                n += 1
                label = f"{base} #{n}"
            curves.append(Curve(label, codecs, list(paths)))
        else:
            if entry in labels:
                raise LearningError(f"codec {entry!r} is listed twice in --codecs")
            curves.append(Curve(entry, codecs))
            label = entry
        labels.add(label)
    return curves


def run_rd(
    images: list[Path],
    codecs: list[str] | list[Curve],
    bpps: list[float],
    metrics: list[str],
    progress: bool = True,
    device: torch.device | None = None,
) -> list[Row]:
    """Rows for every (image, curve, bpp target) and every (image, checkpoint) of the learned curves;
    checkpoints named by ``codecs`` and deep metrics run on ``device`` (None: the CPU)."""
    metric_fns = {m: get_metric(m, device) for m in metrics}
    if all(isinstance(c, Curve) for c in codecs):
        curve_list: list[Curve] = list(codecs)  # type: ignore[arg-type]
    else:
        curve_list = resolve_curves([str(c) for c in codecs], device)
    rows: list[Row] = []
    jobs = sum(len(c.checkpoints) if c.learned else len(bpps) for c in curve_list) * len(images)
    bar = tqdm(total=jobs, desc="rd", disable=not progress)

    def measure(ref: torch.Tensor, codec: Codec, data: bytes) -> dict:
        dec = to_tensor(codec.decode(data))
        with torch.no_grad():
            return {m: float(fn(ref, dec)[0]) for m, fn in metric_fns.items()}

    for path in images:
        try:
            with Image.open(path) as im:
                ref_img = im.convert("RGB")
        except Exception as exc:
            raise LearningError(f"cannot read image {str(path)!r} ({exc})") from exc
        ref = to_tensor(ref_img)
        for curve in curve_list:
            if curve.learned:
                for codec, ckpt in zip(curve.codecs, curve.checkpoints, strict=True):
                    bar.set_postfix(image=path.stem, codec=curve.label, ckpt=Path(ckpt).name)
                    enc = codec.encode(ref_img, 0)  # real compress(): the bytes a decoder needs
                    lmbda = codec.config.get("lmbda")
                    note = "native rate of the checkpoint, no bpp target" + (
                        f" (λ={lmbda:g})" if isinstance(lmbda, (int, float)) else ""
                    )
                    values = measure(ref, codec, enc.data)
                    rows.append(Row(path.name, curve.label, None, enc.bpp, None, 1, values, note, ckpt))
                    bar.update(1)
                continue
            codec, cache = curve.codecs[0], {}
            for target in bpps:
                bar.set_postfix(image=path.stem, codec=curve.label, bpp=target)
                try:
                    res = encode_at_bpp(codec, ref_img, target, cache=cache)
                except LearningError as exc:
                    rows.append(Row(path.name, curve.label, target, None, None, 0, {}, str(exc)))
                    bar.update(1)
                    continue
                values = measure(ref, codec, res.encoded.data)
                enc = res.encoded
                rows.append(Row(path.name, curve.label, target, enc.bpp, enc.quality, res.n_encodes, values))
                bar.update(1)
    bar.close()
    return rows


def curves(rows: list[Row], metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per curve label: mean achieved bpp and mean metric per point, over images, sorted by rate.

    A point is a bpp target (classical) or a checkpoint (learned); it counts only when every image has
    a value for it, so all points average the same images. Learned rows without a checkpoint (CSVs
    written before the column existed) are matched by their order within each image.
    """
    images = sorted({r.image for r in rows})
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label in sorted({r.codec for r in rows}):
        mine = [r for r in rows if r.codec == label]
        groups: dict[tuple, list[Row]] = {}
        legacy: dict[str, int] = {}
        for r in mine:
            if r.target_bpp is not None:
                key: tuple = ("bpp", r.target_bpp)
            elif r.checkpoint:
                key = ("ckpt", r.checkpoint)
            else:
                legacy[r.image] = legacy.get(r.image, -1) + 1
                key = ("order", legacy[r.image])
            groups.setdefault(key, []).append(r)
        pts = []
        for sel in groups.values():
            if sorted(r.image for r in sel) != images:
                continue
            if all(r.achieved_bpp is not None and metric in r.metrics for r in sel):
                bpp = np.mean([r.achieved_bpp for r in sel])
                pts.append((bpp, np.mean([r.metrics[metric] for r in sel])))
        pts.sort()
        if pts:
            out[label] = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    return out
