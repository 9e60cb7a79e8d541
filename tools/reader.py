"""What a Video asks of a decoding library (``Reader``), and how a reader says another one might do better."""
from __future__ import annotations

from typing import Protocol

from .frames import Frame
from .video_errors import VideoError


class Reader(Protocol):
    """One decoding library behind a Video. All calls come from the Video's worker thread.

    Besides its ``name``, it reports the stream's ``video_info.STREAM_FIELDS``, typed as ``VideoInfo`` types them
    (tests/tools/test_video.py checks that the two agree).
    """

    name: str
    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    codec: str
    rotation: int

    def read(self, indices: list[int], size: tuple[int, int]) -> list[Frame]:
        """Frames at ``indices`` (ascending, distinct), resized to ``size`` (width, height)."""

    def close(self) -> None: ...


class ReaderCannot(Exception):
    """This reader cannot handle the file, though another one might; ``error`` is what to raise if none can."""

    def __init__(self, error: VideoError):
        super().__init__(str(error))
        self.error = error
