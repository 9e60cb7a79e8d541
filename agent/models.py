"""Where sportlens keeps what it builds, and the one way every entry point opens a model backend.

`sportlens ask`, `sportlens bench` and the service's workers all answer with either an OpenAI-compatible server
(vLLM) or a checkpoint run in-process, and all fall back to the embedded default: the checkpoint sportlens ships
(``agent/model``), trained from random weights to answer SportSim visual questions, its weights checked against its
manifest before use. Keeping that choice here means the three agree on it.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sportlens.agent.backends.base import BackendError, ModelBackend
from sportlens.agent.backends.openai_http import OpenAIHTTPBackend
from sportlens.agent.checkpoint_files import (SHIPPED_MODEL_DIR, ModelFilesError, checkpoint_calibration,
                                              checkpoint_thought_chars, verify_weights)
from sportlens.agent.loop import AgentSettings

# The transformers backend (torch, transformers) is imported when a checkpoint is opened in-process: `sportlens` imports
# this module at start-up, and `sportlens --help` takes 0.6 s so, 6.0 to 6.3 s with it here (medians of 5 runs, twice,
# on a shared 2-core CPU).


def sportlens_home() -> Path:
    """$SPORTLENS_HOME, else ~/.cache/sportlens: models, vLLM's environment, the embedded Redis."""
    return Path(os.environ.get("SPORTLENS_HOME", Path.home() / ".cache" / "sportlens"))


def default_model_dir() -> Path:
    """The embedded default model: the shipped checkpoint (see ``sportlens.agent.checkpoint_files``)."""
    return SHIPPED_MODEL_DIR


def demo_model_dir(home: Path | None = None) -> Path:
    """Where `sportlens make-demo-model` writes the random-weight demo checkpoint by default."""
    return (home or sportlens_home()) / "models" / "demo"


def check_model_choice(model_dir: Path | None, backend_url: str | None, model_name: str | None) -> None:
    """Raise ValueError when the model named is not one a backend can be opened for.

    The command line, the benchmark runner and the service name a model the same three ways; one check keeps their
    answers to a half-named server the same (the message names the flag and the environment variable).
    """
    if backend_url and model_dir:
        raise ValueError("give either a checkpoint run in-process (--model, SPORTLENS_MODEL_DIR) or a model server "
                         "(--backend-url, SPORTLENS_BACKEND_URL), not both")
    if backend_url and not model_name:
        raise ValueError("a model server's URL needs the model's name on it: --backend-url needs --model-name "
                         "(SPORTLENS_BACKEND_URL needs SPORTLENS_MODEL_NAME)")


def thought_chars(model_dir: Path | None, backend_url: str | None) -> int:
    """The longest thought a constrained turn may write with this model: the checkpoint's own bound in-process (the
    shipped model scans up to 16 frames in its thought), the loop's default for a server's model."""
    if backend_url:
        return AgentSettings.max_thought_chars
    return checkpoint_thought_chars(model_dir or default_model_dir())


def carried_calibration(model_dir: Path | None, backend_url: str | None) -> Path | None:
    """The calibration the shipped model carries when it is the model answering (neither a checkpoint nor a server
    named), else None: `sportlens ask` and the service answer the default model with its prediction sets."""
    if model_dir or backend_url:
        return None
    return checkpoint_calibration(default_model_dir())


def open_backend(
    *,
    model_dir: Path | None = None,
    backend_url: str | None = None,
    model_name: str | None = None,
    api_key: str | None = None,
    status: Callable[[str], None] = lambda message: None,
) -> ModelBackend:
    """An OpenAI-compatible server's backend when ``backend_url`` is given, else ``model_dir`` in-process.

    With neither, the shipped checkpoint is used. An in-process checkpoint whose manifest records its weights' hash
    (an exported one, the shipped one too) is opened only if the weights match it. ``status`` hears what takes
    time. Raises BackendError when the model cannot be served (a half-named server included).
    """
    try:
        check_model_choice(model_dir, backend_url, model_name)
    except ValueError as error:
        raise BackendError(str(error)) from None
    if backend_url:
        return OpenAIHTTPBackend(backend_url, model_name, api_key=api_key)
    from transformers.utils import logging as transformers_logging

    from sportlens.agent.backends.transformers_local import TransformersBackend

    transformers_logging.disable_progress_bar()  # callers show their own progress
    path = model_dir or default_model_dir()
    try:
        verify_weights(path)  # an exported checkpoint (the shipped one too) names its weights' hash
    except ModelFilesError as error:
        raise BackendError(str(error)) from None
    status(f"loading {path}")
    return TransformersBackend(path)
