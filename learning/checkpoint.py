"""train-codec checkpoints, resumed exactly: model, both optimizers, RNG states, step/epoch/position, log.

``learning.training`` writes and resumes them, ``learning.codecs`` (``ckpt:PATH``) codes with them; this
module imports neither.

A checkpoint holds plain data only (dicts, lists, tuples, str/int/float/bool/None and tensors), so
:func:`load` reads it with ``torch.load(weights_only=True)``: a file that would need anything else to
unpickle (a class, a function, numpy objects) is refused instead of being allowed to run code.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from learning.errors import LearningError

FORMAT = "learning.train_codec/1"
# what save() writes and the readers (resume, LearnedCodec) index without further checks
REQUIRED = (
    "arch", "N", "M", "config", "model", "optimizer", "aux_optimizer",
    "step", "epoch", "batch_in_epoch", "rng", "history",
)  # fmt: skip


def _plain(value, where: str):
    """``value`` as plain data: numpy scalars → Python numbers, paths → str, tuples kept, dicts/lists
    copied; tensors pass. Anything else is a bug in the caller (TypeError), never pickled."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        return {_plain(k, where): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(f"checkpoint field {where} is a {type(value).__name__}, not plain data")


def _cpu(value):
    """``value`` with every tensor moved to the CPU (dicts and lists walked)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu(v) for v in value)
    return value


def _numpy_rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "bit_generator": str(name),
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def save(
    path: str | Path,
    *,
    model,
    optimizer,
    aux_optimizer,
    config: dict,
    step: int,
    epoch: int,
    batch_in_epoch: int,
    history: list,
    finished: bool = False,
    extra: dict | None = None,
) -> None:
    """Write atomically (temp file + rename) so an interrupted save never leaves a broken checkpoint.
    Tensors are stored on the CPU, so a checkpoint resumes or decodes on any device; ``extra`` holds
    further plain fields (schedule state, best validation loss)."""
    model.update(force=True)  # CDF tables for real entropy coding; training never reads them
    blob = {
        **_plain(extra or {}, "extra"),
        "format": FORMAT,
        "arch": config["arch"],
        "N": config["N"],
        "M": config["M"],
        "config": _plain(config, "config"),
        "model": _cpu(model.state_dict()),
        "optimizer": _cpu(optimizer.state_dict()),
        "aux_optimizer": _cpu(aux_optimizer.state_dict()),
        "step": step,
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(), "python": random.getstate()},
        "history": _plain(history, "history"),
        "finished": finished,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def _refusal(exc: Exception) -> str:
    """The one-line reason behind torch's (long) weights-only refusal."""
    text = str(exc)
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return f"it needs the Python object {m.group(1)} to unpickle"
    m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    return f"it is not plain data ({m.group(1).strip() if m else 'unsupported pickle content'})"


def load(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save` with ``weights_only=True`` (no code runs).

    Raises LearningError (one line) for a missing or unreadable file, for a file whose pickle needs
    anything but plain data and tensors (refused without running it; this includes checkpoints of
    older versions, which stored numpy RNG state), and for a file that is no train-codec checkpoint."""
    try:
        with warnings.catch_warnings():  # e.g. "pickle protocol 4": noise for a file we refuse anyway
            warnings.simplefilter("ignore", UserWarning)
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise LearningError(f"checkpoint {str(path)!r} does not exist") from exc
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):  # not a pickle at all
            raise LearningError(f"cannot read checkpoint {str(path)!r} ({_first_line(exc)})") from exc
        raise LearningError(
            f"{str(path)!r} is not a safe checkpoint: {_refusal(exc)}, and loading it could run code, "
            "so it was not loaded (only plain data and tensors are accepted; checkpoints from older "
            "versions of train-codec stored numpy objects: train again to re-create it)"
        ) from exc
    except Exception as exc:
        raise LearningError(f"cannot read checkpoint {str(path)!r} ({_first_line(exc)})") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise LearningError(f"{str(path)!r} is not a train-codec checkpoint")
    missing = [k for k in REQUIRED if k not in blob]
    if missing:
        raise LearningError(
            f"{str(path)!r} is not a complete train-codec checkpoint (no {', '.join(missing)})"
        )
    return blob


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def restore_rng(blob: dict) -> None:
    """Set the torch, numpy and Python RNGs to the states stored by :func:`save`."""
    torch.set_rng_state(blob["rng"]["torch"])
    st = blob["rng"]["numpy"]
    keys = st["keys"].numpy().astype(np.uint32)
    np.random.set_state((st["bit_generator"], keys, st["pos"], st["has_gauss"], st["cached_gaussian"]))
    random.setstate(blob["rng"]["python"])
