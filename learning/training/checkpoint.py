"""Checkpoints that resume exactly: model, both optimizers, RNG states, step/epoch/position, log."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from learning.errors import LearningError

FORMAT = "learning.train_codec/1"


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
) -> None:
    """Write atomically (temp file + rename) so an interrupted save never leaves a broken checkpoint."""
    model.update(force=True)  # CDF tables for real entropy coding; training never reads them
    blob = {
        "format": FORMAT,
        "arch": config["arch"],
        "N": config["N"],
        "M": config["M"],
        "config": config,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "aux_optimizer": aux_optimizer.state_dict(),
        "step": step,
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "history": history,
        "finished": finished,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load(path: str | Path) -> dict:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError as exc:
        raise LearningError(f"checkpoint {str(path)!r} does not exist") from exc
    except Exception as exc:
        raise LearningError(f"cannot read checkpoint {str(path)!r} ({exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise LearningError(f"{str(path)!r} is not a train-codec checkpoint")
    return blob


def restore_rng(blob: dict) -> None:
    torch.set_rng_state(blob["rng"]["torch"])
    np.random.set_state(blob["rng"]["numpy"])
    random.setstate(blob["rng"]["python"])
