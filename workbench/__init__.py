"""LLMOps Workbench: datasets, prompt/model/RAG grids, scores and winners in one DuckDB workspace.

``import workbench as wb; ws = wb.open()`` is the whole entry point. Heavy dependencies (litellm,
pandas, faiss) are imported on first use, never here, so the import stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access (PEP 562).
_EXPORTS = {
    "open": "workbench.workspace",
    "Workspace": "workbench.workspace",
    "Dataset": "workbench.datasets",
    "Prompt": "workbench.prompts",
    "ModelConfig": "workbench.llm",
    "Experiment": "workbench.runner",
    "Run": "workbench.runner",
    "Variant": "workbench.runner",
    "metric": "workbench.metrics.registry",
    "Score": "workbench.metrics.registry",
    "WorkbenchError": "workbench.errors",
    "WorkspaceError": "workbench.errors",
    "WorkspaceLockedError": "workbench.errors",
    "SchemaVersionError": "workbench.errors",
    "ValidationError": "workbench.errors",
    "DatasetError": "workbench.errors",
    "TemplateError": "workbench.errors",
    "SpecError": "workbench.errors",
    "MetricError": "workbench.errors",
    "RetrievalError": "workbench.errors",
    "ModelError": "workbench.errors",
    "ModelFatalError": "workbench.errors",
    "NotFoundError": "workbench.errors",
    "BundleError": "workbench.errors",
    "Bundle": "workbench.bundles",
    "load_bundle": "workbench.bundles",
    "PromotionError": "workbench.errors",
    "PromptEditor": "workbench.widgets.prompt_editor",
    "ArchiveError": "workbench.errors",
    "RunInProgressError": "workbench.errors",
}

__all__ = [
    "ArchiveError",
    "Bundle",
    "BundleError",
    "Dataset",
    "DatasetError",
    "Experiment",
    "MetricError",
    "ModelConfig",
    "ModelError",
    "ModelFatalError",
    "NotFoundError",
    "PromotionError",
    "Prompt",
    "PromptEditor",
    "RetrievalError",
    "Run",
    "RunInProgressError",
    "SchemaVersionError",
    "Score",
    "SpecError",
    "TemplateError",
    "ValidationError",
    "Variant",
    "WorkbenchError",
    "Workspace",
    "WorkspaceError",
    "WorkspaceLockedError",
    "__version__",
    "load_bundle",
    "metric",
    "open",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext workbench``: registers the ``%llmops`` magics (lazily imported)."""
    from workbench.magics import load_ipython_extension as _load

    _load(ipython)


if TYPE_CHECKING:
    from workbench.bundles import Bundle, load_bundle
    from workbench.datasets import Dataset
    from workbench.errors import (
        ArchiveError,
        BundleError,
        DatasetError,
        MetricError,
        ModelError,
        ModelFatalError,
        NotFoundError,
        PromotionError,
        RetrievalError,
        RunInProgressError,
        SchemaVersionError,
        SpecError,
        TemplateError,
        ValidationError,
        WorkbenchError,
        WorkspaceError,
        WorkspaceLockedError,
    )
    from workbench.llm import ModelConfig
    from workbench.metrics.registry import Score, metric
    from workbench.prompts import Prompt
    from workbench.runner import Experiment, Run, Variant
    from workbench.widgets.prompt_editor import PromptEditor
    from workbench.workspace import Workspace, open  # noqa: A004
