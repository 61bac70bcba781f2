"""Shared pytest fixtures.

`LITELLM_LOCAL_MODEL_COST_MAP` is set before any test module imports litellm: otherwise litellm tries to
download its model cost map at import time, which stalls and warns without internet. The imports above it
(stdlib, pytest) never import litellm.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:  # `import openai_server` works the same from tests and benchmarks
    sys.path.insert(0, _TESTS_DIR)

if TYPE_CHECKING:
    from openai_server import ServerProcess


@pytest.fixture(scope="session")
def openai_server() -> Iterator[ServerProcess]:
    """One fake OpenAI-compatible server subprocess per test session (real HTTP, no litellm patching)."""
    from openai_server import ServerProcess

    with ServerProcess() as server:
        yield server


@pytest.fixture
def fake_llm(openai_server: ServerProcess) -> ServerProcess:
    """The session server, reset so each test starts with zero counters and default config."""
    openai_server.reset()
    return openai_server
