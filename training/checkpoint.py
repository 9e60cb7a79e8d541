"""Checkpoints in and out of training: the base-model check, the merged save and ``manifest.json`` (DESIGN.md).

Every stage writes a complete Hugging Face checkpoint directory (LoRA adapters merged into the weights), with the
processor, the chat template where every reader looks for it, and a manifest that says where the weights came
from: the base architecture, each training stage with its config and data hash, the protocol version, and, once
exported, the evaluation summary and the calibration artifact. ``TransformersBackend``, ``sportlens ask --model``
and vLLM load it unchanged.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sportlens.agent.checkpoint_files import weights_sha256
from sportlens.agent.conformal import CalibrationArtifact, CalibrationError, model_sha256
from sportlens.agent.records import PROTOCOL_VERSION

# transformers and torch (AutoTokenizer, the demo model's files, the transformers backend) wait in the functions that
# use them: `sportlens models show CHECKPOINT` takes 0.55 s so and 7.0 s with them imported here, and `sportlens
# --help`, which imports this module, 0.6 s and 6.1 to 6.2 s (medians of 5 runs on a shared 2-core CPU).

# The protocol needs these as single tokens: the chat turns, the image placeholders, and the tool-call tags.
REQUIRED_TOKENS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                   "<tool_call>", "</tool_call>")
MANIFEST = "manifest.json"
CALIBRATION = "calibration.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be trained from or exported as it is."""


def check_base_model(model_dir: str | Path) -> None:
    """Refuse a checkpoint the protocol cannot be trained on, before any weights are loaded.

    It must be a Qwen-VL-style checkpoint directory whose tokenizer keeps every token of ``REQUIRED_TOKENS`` as one
    special token and whose config names the same image token as the tokenizer.
    """
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"no checkpoint at {model_dir} (no config.json); build one with `sportlens make-demo-model`")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot load the tokenizer of {model_dir}: {error}") from error
    missing = [t for t in REQUIRED_TOKENS if len(tokenizer.encode(t, add_special_tokens=False)) != 1
               or tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
    if missing:
        raise CheckpointError(f"{model_dir}: the tokenizer lacks the special token(s) {' '.join(missing)} that the "
                              "agent protocol needs (a Qwen2.5-VL-style tokenizer has them)")
    config = json.loads((model_dir / "config.json").read_text())
    image_id = config.get("image_token_id")
    if image_id != tokenizer.convert_tokens_to_ids("<|image_pad|>"):
        raise CheckpointError(f"{model_dir}: config.json's image_token_id ({image_id}) is not the tokenizer's "
                              "<|image_pad|>; the vision inputs would not line up")
    if tokenizer.chat_template is None:
        raise CheckpointError(f"{model_dir}: no chat template; the conversations cannot be rendered as served")


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """The checkpoint's manifest, or a minimal one read from config.json for a checkpoint without one."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    if path.is_file():
        return json.loads(path.read_text())
    config = json.loads((model_dir / "config.json").read_text())
    return {"name": model_dir.resolve().name, "base_architecture": (config.get("architectures") or ["?"])[0],
            "stages": [], "protocol_version": PROTOCOL_VERSION}


def save_checkpoint(model, processor, out: str | Path, *, parent: str | Path, stage: dict[str, Any]) -> Path:
    """Write ``model`` (a PeftModel is merged first) and ``processor`` to ``out`` with the parent's manifest + ``stage``."""
    from sportlens.training.demo_model import write_legacy_files

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_legacy_files(out, processor)
    manifest = read_manifest(parent)
    manifest.update(name=out.resolve().name, protocol_version=PROTOCOL_VERSION)
    manifest["stages"] = [*manifest.get("stages", []), stage]
    manifest.pop("note", None)  # the demo's "random weights" note no longer holds
    # An exported parent (the shipped model, a fine-tune's start) names its weights' hash, calibration and evaluation:
    # they describe the parent's weights, not these; kept, the hash made the new checkpoint fail its own check.
    for field in ("weights_sha256", "calibration_artifact", "eval_summary"):
        manifest.pop(field, None)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def export(source: str | Path, out: str | Path, *, calibration: str | Path | None = None,
           eval_summary: str | Path | None = None, name: str | None = None,
           max_thought_chars: int | None = None) -> Path:
    """Copy a trained checkpoint to ``out`` as the served model: merged weights, manifest, calibration beside them.

    ``max_thought_chars``: the longest thought the model was trained and calibrated to write; constrained turns of
    `ask`, `bench` and the service allow it (``agent.checkpoint_files.checkpoint_thought_chars``).

    The calibration artifact must have been made for ``source`` (its name and weights); it is written to
    ``out/calibration.json`` under the exported model's name (the weights are the same) and named in the manifest, so
    that answers of the exported model carry its sets. The evaluation summary (a JSON file, e.g. a benchmark report's
    summary) is embedded. The result is loaded once with the
    transformers backend before this returns, so a checkpoint that does not serve is never exported.
    """
    from sportlens.agent.backends.transformers_local import TransformersBackend

    source, out = Path(source), Path(out)
    check_base_model(source)
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f"{out} is not empty; choose an empty or new directory")
    artifact = None
    if calibration is not None:
        try:
            artifact = CalibrationArtifact.load(calibration)
            artifact.check_model(read_manifest(source).get("name") or source.resolve().name, model_sha256(source))
        except CalibrationError as error:
            raise CheckpointError(f"{calibration}: {error}") from None
    if (source / "adapter_config.json").is_file():
        raise CheckpointError(f"{source} holds LoRA adapters; the training stages write merged checkpoints")
    shutil.copytree(source, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("trainer"))  # not its optimizer
    manifest = read_manifest(source)
    manifest["name"] = name or out.resolve().name
    if artifact is not None:
        artifact.model_copy(update={"model": manifest["name"]}).save(out / CALIBRATION)
        manifest["calibration_artifact"] = CALIBRATION
    else:
        (out / CALIBRATION).unlink(missing_ok=True)
        manifest["calibration_artifact"] = None
    manifest["eval_summary"] = json.loads(Path(eval_summary).read_text()) if eval_summary else None
    if max_thought_chars is not None:
        manifest["max_thought_chars"] = max_thought_chars
    manifest["weights_sha256"] = weights_sha256(out)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    backend = TransformersBackend(out)  # raises BackendError when it would not serve
    backend.close()
    return out
