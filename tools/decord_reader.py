"""The decord reader: ``decord.VideoReader.get_batch``, resized with Pillow; PyAV probes what decord does not report."""
from __future__ import annotations

import av
import decord
import numpy as np
from PIL import Image

from .file_checks import check_not_truncated, check_resolution, looks_like_container, no_frames, not_a_video
from .frames import Frame
from .pyav_reader import declared_seconds
from .reader import ReaderCannot
from .video_errors import CorruptVideo, UnsupportedVideo


class DecordReader:
    """decord's VideoReader.get_batch, resized with Pillow; codec and rotation come from a PyAV probe."""

    name = "decord"

    def __init__(self, path: str, threads: int):
        decord.logging.set_level(decord.logging.QUIET)  # its FFmpeg logs to stderr; failures reach us as errors
        self.path = path
        try:
            self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
            self.frames = len(self._reader)
            first = self._reader[0] if self.frames else None
        except (decord.DECORDError, RuntimeError) as error:
            if not looks_like_container(path):
                raise not_a_video(path) from None
            raise ReaderCannot(UnsupportedVideo(
                f"{path}: decord cannot open it ({_first_line(error)}); use reader='pyav'"
            )) from None
        if first is None:
            raise no_frames(path)
        self.height, self.width = first.shape[:2]  # decord applies the display matrix itself
        check_resolution(path, self.width, self.height)
        self.fps = float(self._reader.get_avg_fps())
        self.duration_s = self.frames / self.fps
        self.codec, self.rotation, declared_s = _probe_header(path)
        check_not_truncated(path, declared_s, self.duration_s, self.frames)

    def read(self, indices: list[int], size: tuple[int, int]) -> list[Frame]:
        try:
            batch = self._reader.get_batch(indices).asnumpy()
            starts = self._reader.get_frame_timestamp(indices)[:, 0]
        except (decord.DECORDError, RuntimeError) as error:
            raise CorruptVideo(
                f"{self.path} is damaged: decord failed on frames {indices} ({_first_line(error)}); re-encode it"
            ) from None
        frames = []
        for index, seconds, rgb in zip(indices, starts, batch):
            if (rgb.shape[1], rgb.shape[0]) != size:
                rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
            frames.append(Frame(index, float(seconds), rgb))
        return frames

    def close(self) -> None:
        del self._reader


def _first_line(error: Exception) -> str:
    """decord's messages run to many lines of C++ context; the end of the first one says what went wrong."""
    return (str(error).strip().splitlines() or [""])[0][-120:]


def _probe_header(path: str) -> tuple[str, int, float | None]:
    """Codec name, display rotation and declared video seconds via PyAV, for a reader that does not report
    them; ("unknown", 0, None) if PyAV cannot tell."""
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            frame = next(container.decode(stream))
            rotation = round(frame.rotation / 90) % 4 * 90
            return stream.codec_context.codec.canonical_name, rotation, declared_seconds(container, stream)
    except (av.FFmpegError, IndexError, StopIteration):
        return "unknown", 0, None
