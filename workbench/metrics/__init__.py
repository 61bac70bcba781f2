"""Metrics: one registry for built-ins, ``@metric`` user functions and entry-point plugins."""

from workbench.metrics.registry import (
    BoundMetric,
    CellView,
    MetricDef,
    Score,
    all_metrics,
    bind,
    get,
    metric,
    register,
)

__all__ = ["BoundMetric", "CellView", "MetricDef", "Score", "all_metrics", "bind", "get", "metric", "register"]
