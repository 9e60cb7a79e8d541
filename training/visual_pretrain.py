"""Teach a vision tower trained from random weights to read SportSim visual frames, with auxiliary targets.

In SFT the vision tower learns only through the few tokens that depend on a frame's content (the counts, whether a
tool frame shows the incident, its colour, shape and place): after 1,700 steps of trajectories and look drills the
language model still named the marker's colour at chance, although the frame at the model's 168×84 shows it plainly.
Here the tower gets a dense signal instead: linear heads on each of its merged tokens (the 18 a frame becomes in the
prompt) predict, for every frame, the number of marks in the bar, whether the incident's marker is shown and which
team colour stands on the left half (what a side question asks: a frozen tower trained without it carried it at
chance), and for a marker its colour, shape and place. Frames are rendered from random scenes
(``sportsim_visual.render``), passed through JPEG as distilled frames are, and shaped by the checkpoint's own image
processor. Heads are thrown away; the
checkpoint keeps its language model and gets the trained tower.

    python -m sportlens.training.visual_pretrain CHECKPOINT OUT [--steps N] [--probe]

``--probe`` trains the heads only (the tower frozen): how much of each target the tower's tokens already carry.
It prints the held-out accuracy per target (scenes of another seed) after training.
"""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from sportlens.benchmarks import sportsim_visual as visual
from sportlens.training.checkpoint import save_checkpoint

SHAPES = (*visual.SHAPE_OF_KIND.values(), *visual.FOUL_SHAPES)
COLOURS = tuple(visual.TEAM_RGB)
TARGETS = {"marks": visual.MARK_SLOTS + 1, "seen": 2, "left": len(COLOURS), "colour": len(COLOURS),
           "shape": len(SHAPES), "place": len(visual.PLACES)}


def sample_frames(seed: int, count: int) -> tuple[list[Image.Image], dict[str, torch.Tensor]]:
    """``count`` frames of random scenes, half of them inside the incident, and their targets."""
    rng = np.random.default_rng(seed)
    images, labels = [], {name: [] for name in TARGETS}
    for _ in range(count):
        scene = visual.make_scene(int(rng.integers(1 << 30)), int(rng.integers(1 << 20)))
        start, end = scene.moment
        t = int(rng.integers(start, end + 1)) if rng.random() < 0.5 else int(rng.integers(scene.frames))
        pixels = visual.render(scene, t)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(rng.integers(70, 95)))
        images.append(Image.open(buffer).convert("RGB"))
        seen = start <= t <= end
        labels["marks"].append(scene.marks_before + (t >= start))
        labels["seen"].append(int(seen))
        labels["left"].append(COLOURS.index(scene.teams[scene.sides.index("left")]))
        labels["colour"].append(COLOURS.index(scene.teams[scene.team]) if seen else -100)
        labels["shape"].append(SHAPES.index(scene.shape) if seen else -100)
        labels["place"].append(visual.PLACES.index(scene.place) if seen else -100)
    return images, {name: torch.tensor(values) for name, values in labels.items()}


class Heads(torch.nn.Module):
    """One linear read-out per target, applied to every merged token of a frame on its own.

    Each token must tell the whole frame (its marks, whether the marker is shown, its colour, shape and place), so
    the language model reads the frame from whichever of its tokens it attends to: a head on all tokens at once
    taught the tower to read (100 % held out) but left the facts spread over the tokens where the marker lies, and the
    language model did not learn to gather them (colour at chance after 200 SFT steps).
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(width, elementwise_affine=False)  # the tower's tokens are not normalised
        self.heads = torch.nn.ModuleDict({name: torch.nn.Linear(width, n) for name, n in TARGETS.items()})

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of shape (frames, tokens, classes) per target."""
        normed = self.norm(features)
        return {name: head(normed) for name, head in self.heads.items()}


def _features(model, processor, images: list[Image.Image]) -> torch.Tensor:
    batch = processor.image_processor(images=images, return_tensors="pt")
    tokens = model.model.get_image_features(batch["pixel_values"], batch["image_grid_thw"]).pooler_output
    return torch.stack(list(tokens))


def accuracy(model, processor, heads: Heads, images, labels) -> dict[str, float]:
    """Held-out accuracy per target over every token of every frame (colour, shape, place: frames with the marker)."""
    with torch.no_grad():
        logits = heads(_features(model, processor, images))
    result = {}
    for name, target in labels.items():
        keep = target != -100
        guesses = logits[name].argmax(-1)[keep]
        result[name] = round(float((guesses == target[keep, None]).float().mean()), 3)
    return result


def _loss(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
    tokens = next(iter(logits.values())).shape[1]
    return sum(torch.nn.functional.cross_entropy(logits[name].flatten(0, 1), labels[name].repeat_interleave(tokens),
                                                 ignore_index=-100) for name in TARGETS)


def pretrain(checkpoint: Path, out: Path | None, *, steps: int, batch: int = 32, lr: float = 1e-3,
             probe: bool = False, seed: int = 0) -> dict:
    """Train heads (and the tower unless ``probe``) for ``steps`` batches; save the checkpoint to ``out``."""
    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(checkpoint)
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.float32)
    visual_tower = model.model.visual
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if not probe:
        for parameter in visual_tower.parameters():
            parameter.requires_grad_(True)
    held_images, held_labels = sample_frames(10_000 + seed, 400)
    heads = Heads(_features(model, processor, held_images[:1]).shape[-1])
    trainable = list(heads.parameters()) + ([] if probe else list(visual_tower.parameters()))
    optimizer = torch.optim.AdamW(trainable, lr=lr)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        images, labels = sample_frames(seed * 1_000_003 + step, batch)
        logits = heads(_features(model, processor, images))
        loss = _loss(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == steps:
            print(f"step {step}: loss {float(loss):.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    after = accuracy(model, processor, heads, held_images, held_labels)
    print(f"held-out accuracy after {steps} steps{' (tower frozen)' if probe else ''}: {after}", flush=True)
    summary = {"steps": steps, "seconds": round(time.perf_counter() - started, 1), "held_out_accuracy": after}
    if out is not None and not probe:
        stage = {"stage": "vision", "batch_size": batch, "learning_rate": lr, "seed": seed, **summary}
        save_checkpoint(model, processor, out, parent=checkpoint, stage=stage)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sportlens.training.visual_pretrain", description=__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--probe", action="store_true", help="train the heads only: what the tower already carries")
    args = parser.parse_args(argv)
    pretrain(args.checkpoint, args.out, steps=args.steps, batch=args.batch, lr=args.lr, probe=args.probe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
