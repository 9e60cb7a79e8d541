"""Fixtures shared across the test suite."""
from __future__ import annotations

from pathlib import Path

import pytest

from sportlens.cli import share_cores

# As `sportlens` does for every command: the suite runs torch in-process beside redis-server, vLLM and Chromium
# on 2 cores, where spinning OpenMP threads slow a model call many-fold.
share_cores()


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random-init demo checkpoint (seed 0), built once per session in a temporary directory."""
    from sportlens.training.demo_model import build_demo_model  # imported here: torch loads only when needed

    return build_demo_model(tmp_path_factory.mktemp("models") / "sportlens-demo", seed=0)
