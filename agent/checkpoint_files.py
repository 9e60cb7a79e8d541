"""What a checkpoint's files must be: weights that match the hash in its manifest, the calibration it carries, and
where the one sportlens ships as its embedded default lives.

The shipped checkpoint (``agent/model/``) was trained from random weights by ``python -m sportlens.training.full_run
--profile visual-cpu`` on SportSim visual clips; its ``manifest.json`` records how, the evidence, and the SHA-256 of
``model.safetensors``. A truncated or altered file would otherwise load and answer nonsense without a word.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sportlens.agent.loop import AgentSettings

SHIPPED_MODEL_DIR = Path(__file__).with_name("model")
WEIGHTS = "model.safetensors"


class ModelFilesError(ValueError):
    """A checkpoint's files are not what its manifest says: the message names the file and what to do."""


def weights_sha256(model_dir: Path) -> str:
    """The SHA-256 of a checkpoint's weights file, as recorded in manifests."""
    digest = hashlib.sha256()
    with open(Path(model_dir) / WEIGHTS, "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(model_dir: Path) -> dict | None:
    """A checkpoint's manifest.json, or None when it has none."""
    path = Path(model_dir) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def verify_weights(model_dir: Path) -> None:
    """Raise ModelFilesError unless ``model.safetensors`` hashes to the manifest's ``weights_sha256``.

    A checkpoint whose manifest records no hash (one built or trained here, not exported), or that has no manifest
    (someone else's), passes: only a recorded hash is checked.
    """
    model_dir = Path(model_dir)
    manifest = _manifest(model_dir)
    if manifest is None:
        if model_dir == SHIPPED_MODEL_DIR:
            raise ModelFilesError(f"the shipped model is missing from {model_dir}; reinstall sportlens or name a "
                                  "checkpoint with --model")
        return
    expected = manifest.get("weights_sha256")
    if expected is not None and (not (model_dir / WEIGHTS).is_file() or weights_sha256(model_dir) != expected):
        raise ModelFilesError(f"{model_dir / WEIGHTS} does not match the SHA-256 in its manifest.json (corrupted or "
                              "altered); reinstall sportlens or name a checkpoint with --model")


def checkpoint_calibration(model_dir: Path) -> Path | None:
    """The calibration artifact a checkpoint carries (``sportlens models export --calibration``), or None.

    Answers from such a checkpoint come with conformal prediction sets unless the caller names another artifact.
    """
    name = (_manifest(model_dir) or {}).get("calibration_artifact")
    return Path(model_dir) / name if name and (Path(model_dir) / name).is_file() else None


def checkpoint_thought_chars(model_dir: Path) -> int:
    """The longest thought a constrained turn of this checkpoint may write: its manifest's ``max_thought_chars``, else
    the loop's default.

    A constrained turn's thought is bounded (200 characters by default, so that an untrained model's noise ends); the
    shipped model scans up to 16 frames in its thought, about 600–900 characters, and says so in its manifest.
    """
    return (_manifest(model_dir) or {}).get("max_thought_chars") or AgentSettings.max_thought_chars
