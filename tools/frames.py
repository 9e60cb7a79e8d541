"""The frame record every layer above passes around, and how frame indices are sampled."""
from __future__ import annotations

import io
from dataclasses import dataclass, field

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
