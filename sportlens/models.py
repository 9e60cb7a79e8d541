"""Where sportlens keeps what it builds, and the one way every entry point opens a model backend.

`sportlens ask`, `sportlens bench` and the service's workers all answer with either an OpenAI-compatible server
(vLLM) or a checkpoint run in-process, and all fall back to the embedded default: the demo checkpoint, built
offline on first use. Keeping that choice here means the three agree on it.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `sportlens --help` and the service's settings stay free of numpy, PIL and pydantic models
    from sportlens.agent.backends.base import ModelBackend


def sportlens_home() -> Path:
    """$SPORTLENS_HOME, else ~/.cache/sportlens: models, vLLM's environment, the embedded Redis."""
    return Path(os.environ.get("SPORTLENS_HOME", Path.home() / ".cache" / "sportlens"))


def default_model_dir(home: Path | None = None) -> Path:
    """The embedded default model: the offline-built demo checkpoint (random weights, random answers)."""
    return (home or sportlens_home()) / "models" / "demo"


def open_backend(
    *,
    model_dir: Path | None = None,
    backend_url: str | None = None,
    model_name: str | None = None,
    api_key: str | None = None,
    home: Path | None = None,
    status: Callable[[str], None] = lambda message: None,
) -> ModelBackend:
    """An OpenAI-compatible server's backend when ``backend_url`` is given, else ``model_dir`` in-process.

    With neither, the demo checkpoint under ``home`` is used, built there first if it is missing (once; well under
    a second). ``status`` hears what takes time. Raises BackendError when the model cannot be served.
    """
    if backend_url:
        from sportlens.agent.backends.openai_http import OpenAIHTTPBackend

        return OpenAIHTTPBackend(backend_url, model_name, api_key=api_key)
    from transformers.utils import logging as transformers_logging

    from sportlens.agent.backends.transformers_local import TransformersBackend

    transformers_logging.disable_progress_bar()  # callers show their own progress
    path = model_dir or default_model_dir(home)
    if model_dir is None and not (path / "config.json").exists():
        from sportlens.training.demo_model import build_demo_model

        status(f"building the demo model at {path} (random weights; once)")
        build_demo_model(path)
    status(f"loading {path}")
    return TransformersBackend(path)
