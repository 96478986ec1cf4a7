"""The one metric registry.

A metric compares a reference batch with a distorted batch: float tensors N×C×H×W in [0, 1]
(C = 3 for RGB or 1 for luma) and returns a tensor of N values. ``higher_is_better`` says which way
it points; ``distance`` always returns "smaller = closer", which is what 2AFC scoring needs.

Device: deep metrics (``lpips-*``, ``dpl:FILE``) run their network on the registry's device, CPU unless
:func:`set_device` (or :func:`using_device`) says otherwise; results come back to the inputs' device.
Classical metrics always run where their inputs are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from learning.errors import LearningError

MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: MetricFn
    higher_is_better: bool
    implementation: str = ""  # which library / reference it follows, shown in reports

    def __call__(self, ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        if ref.shape != dist.shape or ref.dim() != 4:
            raise LearningError(f"{self.name}: expected two N×C×H×W batches of equal shape, got "
                                f"{tuple(ref.shape)} and {tuple(dist.shape)}")
        return self.fn(ref, dist)

    def distance(self, ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        value = self(ref, dist)
        return -value if self.higher_is_better else value


_DEVICE = torch.device("cpu")


def set_device(device: str | torch.device) -> torch.device:
    """Run deep metrics on ``device`` (``auto | cpu | cuda | cuda:N | mps`` or a torch.device) from now on;
    returns the previous device. A LearningError for an unknown or absent device."""
    from learning.device import resolve_device

    global _DEVICE
    previous, _DEVICE = _DEVICE, resolve_device(device)
    return previous


def get_device() -> torch.device:
    """The device deep metrics run on."""
    return _DEVICE


@contextmanager
def using_device(device: str | torch.device) -> Iterator[torch.device]:
    """``set_device`` for the enclosed block only (a command's run), the previous device restored after."""
    previous = set_device(device)
    try:
        yield _DEVICE
    finally:
        set_device(previous)


_REGISTRY: dict[str, Metric] = {}
# Parametrised metrics ("dpl:FILE", "lpips-alex") are built by factories keyed on their prefix.
_FACTORIES: dict[str, Callable[[str], Metric]] = {}


def register(name: str, higher_is_better: bool, implementation: str = "") -> Callable[[MetricFn], MetricFn]:
    """Decorator: register a function ``(ref, dist) -> N values`` under ``name``."""

    def wrap(fn: MetricFn) -> MetricFn:
        _REGISTRY[name] = Metric(name, fn, higher_is_better, implementation)
        return fn

    return wrap


def register_factory(prefix: str, factory: Callable[[str], Metric]) -> None:
    """Register a builder for names ``prefix`` or ``prefix:ARG`` (e.g. ``dpl:weights.pt``)."""
    _FACTORIES[prefix] = factory


def get_metric(name: str) -> Metric:
    """Look a metric up by name (``psnr``, ``ms-ssim``, ``lpips-alex``, ``dpl:FILE`` ...)."""
    _load_builtin()
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix = name.split(":", 1)[0]
    if prefix in _FACTORIES:
        return _FACTORIES[prefix](name)
    known = sorted(_REGISTRY) + [f"{p}:..." for p in sorted(_FACTORIES)]
    raise LearningError(f"unknown metric {name!r}; known: {', '.join(known)}")


def metric_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY) + sorted(_FACTORIES)


def _load_builtin() -> None:
    import importlib

    for module in ("learning.metrics.classical", "learning.metrics.deep", "learning.metrics.vqmt"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
