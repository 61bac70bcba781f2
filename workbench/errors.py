"""Typed errors. The library raises these; only the faces (CLI, magics) decide how to show them.

Every message says what is wrong, where, and what to do next.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class for every error the workbench raises on purpose."""


class WorkspaceError(WorkbenchError):
    """The workspace folder or database cannot be used as asked."""


class WorkspaceLockedError(WorkspaceError):
    """Another process held the workspace database for longer than the lock timeout."""


class SchemaVersionError(WorkspaceError):
    """The workspace was written by a newer version of the workbench."""


class ValidationError(WorkbenchError):
    """User input (a dataset, a spec, a template, an option) is not valid."""


class DatasetError(ValidationError):
    """A dataset could not be loaded or failed validation."""


class TemplateError(ValidationError):
    """One or more prompt templates do not render against the dataset."""


class SpecError(ValidationError):
    """An experiment spec has an unknown key or a bad value."""


class MetricError(ValidationError):
    """A metric name or its options are not valid."""


class RetrievalError(ValidationError):
    """A corpus or retrieval configuration is not valid."""


class ArchiveError(ValidationError):
    """A run archive is altered, damaged, not an archive, or would overwrite a different run."""


class ModelError(WorkbenchError):
    """A model call failed in a way that retrying will not fix for this cell."""


class ModelFatalError(ModelError):
    """A model error that stops the whole run (bad key, unknown model): retrying other cells is pointless."""


class RunInProgressError(WorkbenchError):
    """The run is being executed by another live process; resuming it now would pay for its cells twice."""


class NotFoundError(WorkbenchError):
    """A named object (dataset, prompt, run, variant) does not exist in the workspace."""


class BundleError(ValidationError):
    """A bundle cannot be exported, or a bundle on disk is incomplete, tampered with or unsafe to open."""


class PromotionError(WorkbenchError):
    """A bundle may not move to the stage asked (failed gates, missing approval, wrong order)."""
