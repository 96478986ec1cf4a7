"""Full-reference image metrics behind one registry: ``get_metric("psnr")(ref, dist)``; a deep metric runs
on the device it is given, ``get_metric("lpips-alex", device)``."""

from learning.metrics.registry import (
    Metric,
    get_metric,
    metric_names,
    register,
    register_factory,
    register_metric,
)

__all__ = ["Metric", "get_metric", "metric_names", "register", "register_factory", "register_metric"]
