"""The one codec registry: every codec by its ``name``, and ``ckpt:`` (learned codecs by checkpoint).

A codec class states its name once (``Codec.name``); the registry keys it by that name. ``ckpt:PATH`` is
resolved here and only here: one checkpoint is one codec (:func:`get_codec`), and a ``--codecs``/spec
entry ``ckpt:A.pt+B.pt`` or ``ckpt:DIR/*.pt`` is one codec per checkpoint (:func:`get_codecs`).
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING

from learning.codecs.avif import AVIF
from learning.codecs.base import Codec
from learning.codecs.heic import HEIC
from learning.codecs.jpeg2000 import JPEG2000
from learning.codecs.jxl import JXL
from learning.codecs.pillow_codecs import JPEG, JPEG444, WebP
from learning.errors import LearningError

if TYPE_CHECKING:  # annotations only: this module must not import torch (see _learned)
    import torch

CHECKPOINT_PREFIX = "ckpt:"
_GLOB_CHARS = set("*?[")

_REGISTRY: dict[str, type[Codec]] = {}


def register(cls: type[Codec]) -> type[Codec]:
    """Add a codec class under its ``name`` (usable as a class decorator); returns the class."""
    if not cls.name:
        raise LearningError(f"codec class {cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


for _cls in (JPEG, JPEG444, WebP, JPEG2000, AVIF, HEIC, JXL):
    register(_cls)


def _learned() -> type[Codec]:
    # imported on first use, not at the top: the learned codec imports torch and CompressAI's models, and
    # the web app imports this registry in every process (it validates classical codec specs)
    from learning.codecs.learned import LearnedCodec

    if LearnedCodec.name not in _REGISTRY:
        register(LearnedCodec)
    return LearnedCodec


def registered_names() -> list[str]:
    """Every codec name, the learned codec's included."""
    _learned()
    return sorted(_REGISTRY)


def get_codec(name: str, require_available: bool = True,
              device: torch.device | None = None) -> Codec:
    """Return the codec called ``name``; a clear error when unknown or unavailable.

    ``ckpt:PATH`` names a learned codec checkpoint made by ``train-codec``; ``device`` (None: the CPU) is
    where its transforms run. Classical codecs ignore it.
    """
    if name.startswith(CHECKPOINT_PREFIX):
        return _from_checkpoint(name, device)
    if name not in _REGISTRY:
        _learned()
    if name not in _REGISTRY:
        raise LearningError(f"unknown codec {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    codec = _REGISTRY[name]()
    if require_available and not codec.available():
        raise LearningError(f"codec {name!r} is not available on this machine"
                            + (f": it needs {codec.requirement}" if codec.requirement else ""))
    return codec


def get_codecs(entry: str, device: torch.device | None = None) -> list[Codec]:
    """The codecs one ``--codecs``/spec entry names: a codec name is one codec; ``ckpt:A.pt+B.pt`` or
    ``ckpt:DIR/*.pt`` is one learned codec per checkpoint, in order (see :func:`expand_checkpoints`)."""
    entry = entry.strip()
    if entry.startswith(CHECKPOINT_PREFIX):
        return [get_codec(CHECKPOINT_PREFIX + p, device=device) for p in expand_checkpoints(entry)]
    return [get_codec(entry, device=device)]


def is_checkpoint(name: str) -> bool:
    """True for a ``ckpt:`` name (a learned codec or a curve of them), which has no quality setting."""
    return name.strip().startswith(CHECKPOINT_PREFIX)


def _from_checkpoint(name: str, device: torch.device | None) -> Codec:
    path = name[len(CHECKPOINT_PREFIX):]
    if not Path(path).is_file() and ("+" in path or _GLOB_CHARS & set(path)):
        raise LearningError(
            f"{name} names several checkpoints (a curve, for `rd` and stimulus specs); "
            "this needs exactly one checkpoint file"
        )
    return _learned().from_checkpoint(path, device, name)


def expand_checkpoints(spec: str) -> list[str]:
    """``ckpt:P1+P2+...`` → checkpoint paths, in the order given; each Pi is a path or a glob pattern
    (its matches sorted by name). A spec that names an existing file is taken whole (a '+' in a file
    name still works). Errors: no paths, a pattern that matches nothing, a missing file, a checkpoint
    listed twice. Only existence is checked here; loading validates the format.
    """
    body = spec[len(CHECKPOINT_PREFIX):] if spec.startswith(CHECKPOINT_PREFIX) else spec
    if not body.strip():
        raise LearningError("ckpt: needs a checkpoint path: ckpt:PATH, ckpt:A.pt+B.pt or ckpt:DIR/*.pt")
    if Path(body).is_file():
        return [body]
    paths: list[str] = []
    for part in body.split("+"):
        part = part.strip()
        if not part:
            raise LearningError(f"ckpt:{body}: empty path between '+' signs")
        if _GLOB_CHARS & set(part):
            matches = sorted(m for m in glob.glob(part) if Path(m).is_file())
            if not matches:
                raise LearningError(f"ckpt:{body}: pattern {part!r} matches no checkpoint file")
            paths += matches
        elif not Path(part).is_file():
            raise LearningError(f"checkpoint {part!r} does not exist")
        else:
            paths.append(part)
    seen: set[Path] = set()
    for p in paths:
        key = Path(p).resolve()
        if key in seen:
            raise LearningError(f"ckpt:{body}: checkpoint {p!r} is listed twice")
        seen.add(key)
    return paths


def describe_codecs() -> list[dict]:
    """Name, availability, library version and quality range of every registered codec."""
    rows = []
    for name in registered_names():
        codec = _REGISTRY[name]()
        ok = codec.available()
        try:
            version = codec.version() if ok else "-"
        except Exception as exc:  # a broken install is reported, not raised
            ok, version = False, f"broken: {exc}"
        rows.append({"name": name, "available": ok, "version": version,
                     "quality_range": codec.quality_range, "description": codec.description})
    return rows
