"""The frame record every layer above passes around, and how frame indices are sampled.

Which frames a question shows is a named choice, ``Sampler``, never an accident:

- ``"centred"`` (the default everywhere: serving, training, evaluation): the centre of each of n equal bins,
  for the initial frames over the whole video and for a tool call over its range [start, end];
- ``"framethinker"`` (FrameThinker-RL's): ``numpy.linspace`` truncated to integers, over the whole video for
  the initial frames (so they include the first and the last frame) and over ``[start + 1, end - 1]`` for a
  tool call (the range's own endpoints are excluded).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its raw index in the full video, its time, and its RGB pixels (H×W×3 uint8)."""

    index: int
    seconds: float
    image: np.ndarray
    _jpegs: dict[int, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    def label(self) -> str:
        """The text the agent protocol puts before the frame: ``frame {index} ({seconds:.1f}s):``."""
        return f"frame {self.index} ({self.seconds:.1f}s):"

    def to_pil(self) -> Image.Image:
        return Image.fromarray(self.image)

    def jpeg(self, quality: int = 90) -> bytes:
        """JPEG bytes, the form in which frames travel to an HTTP model server and to a browser.

        Encoded once per quality and kept: a chat resends every earlier frame with each turn.
        """
        encoded = self._jpegs.get(quality)
        if encoded is None:
            buffer = io.BytesIO()
            self.to_pil().save(buffer, format="JPEG", quality=quality)
            encoded = self._jpegs[quality] = buffer.getvalue()
        return encoded


def uniform_indices(start: int, end: int, n: int) -> list[int]:
    """n distinct frame indices spread uniformly over [start, end] (inclusive), one at the centre of each of n equal bins.

    Centred bins never pick the first and last frame of a window together, so two adjacent
    windows do not share a frame; n must not exceed the window's width.
    """
    width = end - start + 1
    if n < 1 or width < n:
        raise ValueError(f"cannot take {n} distinct frames from [{start}, {end}]")
    return [start + int((i + 0.5) * width / n) for i in range(n)]


Sampler = Literal["centred", "framethinker"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)


def linspace_indices(start: int, end: int, n: int) -> list[int]:
    """n frame indices at ``numpy.linspace(start, end, n)`` truncated to integers: both ends included.

    FrameThinker's spacing, kept exactly as it computes it (duplicates dropped, as its ``set`` drops them); a
    window at least n frames wide has none, since the step is then at least one frame.
    """
    if n < 1 or end - start + 1 < n:
        raise ValueError(f"cannot take {n} distinct frames from [{start}, {end}]")
    return sorted({int(value) for value in np.linspace(start, end, n)})


def opening_indices(total_frames: int, k: int, sampler: Sampler = "centred") -> list[int]:
    """The initial frames of a question: k spread over the whole video (every frame of a video shorter than k)."""
    k = min(k, total_frames)
    if _checked(sampler) == "centred":
        return uniform_indices(0, total_frames - 1, k)
    return linspace_indices(0, total_frames - 1, k)


def call_indices(start: int, end: int, n: int, sampler: Sampler = "centred") -> list[int]:
    """The n frames a tool call on [start, end] returns: centred bins over it, or linspace strictly inside it.

    The protocol's width rule (start < end - n) leaves at least n frames strictly inside the range, so both
    samplers always find n distinct frames in a range the protocol accepts.
    """
    if _checked(sampler) == "centred":
        return uniform_indices(start, end, n)
    return linspace_indices(start + 1, end - 1, n)


def _checked(sampler: str) -> str:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, not {sampler!r}")
    return sampler
