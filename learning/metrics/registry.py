"""The one metric registry.

A metric compares a reference batch with a distorted batch: float tensors N×C×H×W in [0, 1]
(C = 3 for RGB or 1 for luma) and returns a tensor of N values. ``higher_is_better`` says which way
it points; ``distance`` always returns "smaller = closer", which is what 2AFC scoring needs.

Device: a metric is bound to the device its network runs on, given by the caller:
``get_metric(name, device)`` or ``metric.to(device)`` (None or left out: the CPU). Deep metrics
(``lpips-*``, ``dpl:FILE``) run there and return their results on the inputs' device; classical metrics
run where their inputs are. There is no process-wide device.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from learning.device import CPU, device_or_cpu
from learning.errors import LearningError

MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# What a Metric calls: (ref, dist, device its network runs on) -> N values. Classical functions,
# registered with ``register``, leave the device out.
DeviceMetricFn = Callable[[torch.Tensor, torch.Tensor, torch.device], torch.Tensor]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: DeviceMetricFn
    higher_is_better: bool
    implementation: str = ""  # which library / reference it follows, shown in reports
    device: torch.device = CPU  # where a deep metric's network runs

    def __call__(self, ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        if ref.shape != dist.shape or ref.dim() != 4:
            raise LearningError(f"{self.name}: expected two N×C×H×W batches of equal shape, got "
                                f"{tuple(ref.shape)} and {tuple(dist.shape)}")
        return self.fn(ref, dist, self.device)

    def distance(self, ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        value = self(ref, dist)
        return -value if self.higher_is_better else value

    def to(self, device: torch.device | None) -> Metric:
        """This metric with its network on ``device`` (None: the CPU)."""
        return dataclasses.replace(self, device=device_or_cpu(device))


_REGISTRY: dict[str, Metric] = {}
# Parametrised metrics ("dpl:FILE", "lpips-alex") are built by factories keyed on their prefix.
_FACTORIES: dict[str, Callable[[str], Metric]] = {}


def register(name: str, higher_is_better: bool, implementation: str = "") -> Callable[[MetricFn], MetricFn]:
    """Decorator: register a function ``(ref, dist) -> N values`` under ``name`` (it runs where its inputs
    are)."""

    def wrap(fn: MetricFn) -> MetricFn:
        register_metric(Metric(name, lambda ref, dist, _device: fn(ref, dist), higher_is_better,
                               implementation))
        return fn

    return wrap


def register_metric(metric: Metric) -> None:
    """Register a built ``Metric`` under its name (deep metrics, whose function takes the device)."""
    _REGISTRY[metric.name] = metric


def register_factory(prefix: str, factory: Callable[[str], Metric]) -> None:
    """Register a builder for names ``prefix`` or ``prefix:ARG`` (e.g. ``dpl:weights.pt``)."""
    _FACTORIES[prefix] = factory


def get_metric(name: str, device: torch.device | None = None) -> Metric:
    """Look a metric up by name (``psnr``, ``ms-ssim``, ``lpips-alex``, ``dpl:FILE`` ...), bound to
    ``device`` (None: the CPU)."""
    _load_builtin()
    if name in _REGISTRY:
        return _REGISTRY[name].to(device)
    prefix = name.split(":", 1)[0]
    if prefix in _FACTORIES:
        return _FACTORIES[prefix](name).to(device)
    known = sorted(_REGISTRY) + [f"{p}:..." for p in sorted(_FACTORIES)]
    raise LearningError(f"unknown metric {name!r}; known: {', '.join(known)}")


def metric_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY) + sorted(_FACTORIES)


def _load_builtin() -> None:
    # The metric modules register themselves on import and import this module, so they are loaded here,
    # on first use, not at the top (a cycle); a module left out of an installation only removes its metrics.
    for module in ("learning.metrics.classical", "learning.metrics.deep", "learning.metrics.vqmt"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
