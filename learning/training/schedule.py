"""Learning-rate schedules for ``train-codec``: ``none``, ``cosine`` (a function of the step, so a resume
at any step is exact) and ``plateau`` (``ReduceLROnPlateau`` on the validation loss, state checkpointed)."""

from __future__ import annotations

import math

import torch

from learning.errors import LearningError

SCHEDULES = ("none", "cosine", "plateau")
COSINE_FLOOR = 0.01  # cosine decays to 1 % of --lr
PLATEAU_FACTOR, PLATEAU_PATIENCE = 0.5, 2  # halve after 2 validations without improvement


def check(name: str, has_val: bool) -> None:
    if name not in SCHEDULES:
        raise LearningError(f"unknown --lr-schedule {name!r}: use {', '.join(SCHEDULES)}")
    if name == "plateau" and not has_val:
        raise LearningError("--lr-schedule plateau needs --val (it follows the validation loss)")


class Schedule:
    """Sets the optimizer's learning rate before each step (``at_step``) and after each validation
    (``observe``); ``state_dict``/``load_state_dict`` carry what a resume needs."""

    def __init__(self, name: str, optimizer: torch.optim.Optimizer, lr: float, total: int):
        self.name, self.optimizer, self.base, self.total = name, optimizer, lr, max(total, 1)
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE)
            if name == "plateau" else None)

    def at_step(self, step: int) -> None:
        if self.name != "cosine":
            return
        frac = min(step / self.total, 1.0)
        lr = self.base * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def observe(self, val_loss: float) -> None:
        if self.plateau is not None:
            self.plateau.step(val_loss)

    def state_dict(self) -> dict:
        return {"name": self.name, "plateau": self.plateau.state_dict() if self.plateau else None}

    def load_state_dict(self, state: dict) -> None:
        if self.plateau is not None and state.get("name") == "plateau" and state.get("plateau"):
            lr_now = [g["lr"] for g in self.optimizer.param_groups]
            self.plateau.load_state_dict(state["plateau"])
            for group, lr in zip(self.optimizer.param_groups, lr_now):
                group["lr"] = lr


def build(name: str, optimizer: torch.optim.Optimizer, lr: float, total: int) -> Schedule:
    return Schedule(name, optimizer, lr, total)
