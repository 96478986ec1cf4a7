"""Full-reference image metrics behind one registry: ``get_metric("psnr")(ref, dist)``."""

from learning.metrics.registry import (
    Metric,
    get_device,
    get_metric,
    metric_names,
    register,
    register_factory,
    set_device,
    using_device,
)

__all__ = ["Metric", "get_device", "get_metric", "metric_names", "register", "register_factory", "set_device",
           "using_device"]
