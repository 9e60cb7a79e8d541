"""Open a video once, then take frame-exact, resized, upright RGB frames out of it.

The guarantees, stated once (tests/tools/test_video.py checks each):

- Frame ``i`` is the ``i``-th frame in presentation order of the file's main video stream, whatever
  the codec, keyframe spacing or B-frame reordering: exact, never "about there".
- Images are RGB uint8 (H×W×3), turned upright by the display matrix, shrunk to fit inside
  ``max_size`` with the aspect ratio kept, never enlarged.
- Each frame is labelled with its index and its presentation time in seconds from the first frame.
- No call decodes for longer than ``deadline_s``, nor waits longer than that for a decoding slot (a
  process decodes at most ``decoding_threads.DECODING_SLOTS`` requests at once); every failure is a
  :class:`VideoError` whose message names the file and says what to do.
"""
from __future__ import annotations

import functools
import logging
import operator
import os
import weakref
from collections.abc import Callable, Sequence
from typing import TypeVar

from . import decoding_threads
from .decord_reader import DecordReader
from .file_checks import check_file
from .frames import Frame, uniform_indices
from .pyav_reader import PyAVReader
from .reader import Reader, ReaderCannot
from .video_info import STREAM_FIELDS, VideoInfo
from .video_errors import (  # what a Video raises belongs to its API: callers import the errors from here
    CorruptVideo,
    DecodeTimeout,
    NotAVideo,
    UnsupportedVideo,
    VideoError,
    VideoNotFound,
)

__all__ = [
    "CorruptVideo", "DecodeTimeout", "NotAVideo", "READERS", "UnsupportedVideo", "Video", "VideoError", "VideoInfo",
    "VideoNotFound", "fit_size", "probe",
]

log = logging.getLogger(__name__)

READERS = ("auto", "pyav", "decord")

T = TypeVar("T")


class Video:
    """A video file opened for frame-exact random access, like torchcodec's ``VideoDecoder``.

    Args:
        path (str or os.PathLike): the video file.
        reader (str): which library decodes. Default ``"auto"``.

            - ``"pyav"``: PyAV (FFmpeg) in exact mode. Opening demuxes the whole video stream once,
              without decoding, to index every packet (≈40 ms for 5 minutes of 720p H.264); that gives
              the true frame count, keyframe positions and each frame's timestamp. A request then
              seeks to the keyframe before each target and decodes forward only as far as the target,
              continuing instead of seeking when the next target lies ahead in the same GOP, and
              skipping frames nothing refers to; ``threads`` decoders share the GOPs of a request.
              Converts only the frames asked for. Exact on every codec we test (H.264, HEVC with
              open GOPs, VP9, AV1, MPEG-4 Part 2).
            - ``"decord"``: ``decord.VideoReader.get_batch``. About 2× slower, cannot open AV1,
              returns a later frame after seeking in clips with leading B-frames (HEVC with open
              GOPs, MPEG-4 Part 2 with B-frames), and known to deadlock inside its C code (the
              deadline contains that).
            - ``"auto"``: PyAV, falling back to decord for a file PyAV cannot open or seek in.
              ``info.reader`` says which one is in use.
        max_size (tuple[int, int] or None): (width, height) box that returned frames are shrunk to fit,
            keeping the aspect ratio; frames are never enlarged. ``None`` keeps the decoded size.
            Default ``(640, 360)``, the size the agent protocol shows a model.
        deadline_s (float): longest any one call (opening included) may take. Calls run on a worker
            thread of the Video's own; one that overruns raises :class:`DecodeTimeout` and leaves the
            Video unusable (a stuck C decoder cannot be interrupted; its thread is abandoned).
            Default ``30.0``.
        threads (int): decoders working in parallel for the PyAV reader, each on its own handle of
            the file and its own share of a request's GOPs; for decord, its FFmpeg thread count.
            On the 2-core reference machine, 2 decoders took 8 frames spread over a 720p clip in half
            the time of one (FFmpeg's frame threading, which refills its pipeline after every seek,
            saved only a quarter). A request inside a single GOP gains nothing, and where many Videos
            decode at once (the service's workers), 1 is better. The two hand Python's GIL to each other
            several times a packet, which is slow once the cores have idled (between model turns): there,
            8 frames over two GOPs took 20–23 ms with 2 decoders, 26 ms with one, 14 ms with 2 on busy cores;
            two processes decoding after the same idle took no longer than one. Default ``2``.

    Raises:
        VideoNotFound, NotAVideo, CorruptVideo, UnsupportedVideo, DecodeTimeout: all ``VideoError``,
        itself a ``ValueError``.

    Use it as a context manager, or call :meth:`close`. The file stays open between calls, so the
    agent's several ``choose_frames`` calls on one video pay for opening and indexing once.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        reader: str = "auto",
        max_size: tuple[int, int] | None = (640, 360),
        deadline_s: float = 30.0,
        *,
        threads: int = 2,
    ):
        if reader not in READERS:
            raise ValueError(f"reader must be one of {', '.join(READERS)}, not {reader!r}")
        if max_size is not None and (len(max_size) != 2 or min(max_size) < 1):
            raise ValueError(f"max_size must be a (width, height) pair of positive ints or None, not {max_size!r}")
        if not deadline_s > 0:
            raise ValueError(f"deadline_s must be positive, not {deadline_s!r}")
        if threads < 1:
            raise ValueError(f"threads must be 1 or more, not {threads!r}")
        self._path = os.fspath(path)
        self._max_size = max_size
        self._deadline_s = float(deadline_s)
        self._threads = threads
        self._order = ("pyav", "decord") if reader == "auto" else (reader,)
        self._broken = False
        check_file(self._path)

        self._worker = decoding_threads.Worker(f"video:{os.path.basename(self._path)}")
        # The reader in use sits in a list that the finalizer shares (it must not hold self), so that
        # close(), or garbage collection, closes whichever reader a fallback left in place.
        self._readers: list[Reader] = []
        self._finalizer = weakref.finalize(self, self._worker.stop, functools.partial(_close_all, self._readers))
        try:
            self._readers.append(self._call(self._open, "opening"))
        except BaseException:
            self._finalizer()
            raise
        self._info = self._describe(self._reader)

    @property
    def info(self) -> VideoInfo:
        return self._info

    def choose_frames(self, start: int, end: int, n: int) -> list[Frame]:
        """n frames spread uniformly over [start, end] (inclusive), at ``uniform_indices(start, end, n)``.

        Raises ``ValueError`` when start ≥ end, when the range leaves the video, or when it holds fewer
        than n frames.
        """
        start, end, n = operator.index(start), operator.index(end), operator.index(n)
        last = self._info.frames - 1
        if start >= end:
            raise ValueError(f"frame range [{start}, {end}]: start must be before end")
        if start < 0 or end > last:
            raise ValueError(f"frame range [{start}, {end}] leaves the video; {self._name} has frames 0 to {last}")
        if n < 1 or end - start + 1 < n:
            raise ValueError(
                f"frame range [{start}, {end}] holds {end - start + 1} frames, fewer than the {n} asked for"
            )
        return self.frames_at(uniform_indices(start, end, n))

    def frames_at(self, indices: Sequence[int]) -> list[Frame]:
        """The frames at ``indices``, in the order asked (repeats allowed); each index in 0..frames-1."""
        indices = [operator.index(i) for i in indices]
        last = self._info.frames - 1
        bad = [i for i in indices if not 0 <= i <= last]
        if bad:
            raise ValueError(f"frame indices {bad} leave the video; {self._name} has frames 0 to {last}")
        wanted = sorted(set(indices))
        if not wanted:
            return []
        if not decoding_threads.slots.acquire(timeout=self._deadline_s):
            raise DecodeTimeout(
                f"{self._path}: waited {self._deadline_s:g} s for one of the {decoding_threads.DECODING_SLOTS} "
                "decoding slots of this process, all busy with other videos; ask again later"
            )
        try:
            decoded = self._call(lambda: self._read(wanted), f"decoding frames {wanted}")
        finally:
            decoding_threads.slots.release()
        by_index = {frame.index: frame for frame in decoded}
        return [by_index[i] for i in indices]

    def close(self) -> None:
        """Release the file and end the worker thread (waiting up to the deadline for it). Safe to call twice."""
        if self._finalizer.alive:
            self._finalizer()
            if not self._broken:
                self._worker.join(self._deadline_s)

    def __enter__(self) -> Video:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Video({self._info!r})"

    @property
    def _name(self) -> str:
        return os.path.basename(self._path)

    @property
    def _reader(self) -> Reader:
        return self._readers[0]

    def _call(self, work: Callable[[], T], doing: str) -> T:
        """Run ``work`` on the worker thread, giving up after the deadline."""
        if not self._finalizer.alive:
            raise ValueError(f"{self._path}: this Video is closed; open the file again")
        if self._broken:
            raise DecodeTimeout(
                f"{self._path}: an earlier call ran past the {self._deadline_s:g} s deadline and this Video "
                "was abandoned; open the file again (or re-encode it if it keeps happening)"
            )
        try:
            return self._worker.run(work, self._deadline_s)
        except decoding_threads.Overrun:
            self._broken = True
            raise DecodeTimeout(
                f"{self._path}: {doing} took longer than the {self._deadline_s:g} s deadline and was abandoned; "
                "the decoder may be stuck on a damaged file: re-encode it (or, if decord was reading it, "
                "use reader='pyav')"
            ) from None

    def _open(self) -> Reader:
        first_refusal: ReaderCannot | None = None
        for name in self._order:
            try:
                return _READERS[name](self._path, self._threads)
            except ReaderCannot as refusal:
                log.info("%s: the %s reader cannot open it: %s", self._path, name, refusal)
                first_refusal = first_refusal or refusal
        assert first_refusal is not None
        raise first_refusal.error

    def _read(self, indices: list[int]) -> list[Frame]:
        size = self._output_size()
        try:
            return self._reader.read(indices, size)
        except ReaderCannot as refusal:
            fallback = self._fallback_reader(refusal)
            self._reader.close()
            self._readers[0] = fallback
            self._info = self._describe(fallback)
            return fallback.read(indices, size)

    def _fallback_reader(self, refusal: ReaderCannot) -> Reader:
        """In auto mode, the next reader, if it sees the same frames; else the first reader's error."""
        names = self._order[self._order.index(self._reader.name) + 1:]
        for name in names:
            try:
                fallback = _READERS[name](self._path, self._threads)
            except (ReaderCannot, VideoError):
                continue
            if fallback.frames == self._reader.frames:
                log.warning("%s: %s failed (%s); continuing with %s", self._path, self._reader.name, refusal, name)
                return fallback
            fallback.close()
        raise refusal.error

    def _output_size(self) -> tuple[int, int]:
        return fit_size(self._reader.width, self._reader.height, self._max_size)

    def _describe(self, reader: Reader) -> VideoInfo:
        return VideoInfo(path=self._path, reader=reader.name, **{name: getattr(reader, name) for name in STREAM_FIELDS})


def _close_all(readers: list[Reader]) -> None:
    for reader in readers:
        reader.close()


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """The :class:`VideoInfo` of a file. Costs what opening a :class:`Video` costs (one index scan)."""
    with Video(path, threads=1) as video:
        return video.info


def fit_size(width: int, height: int, max_size: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height) shrunk to fit inside ``max_size`` with the aspect ratio kept; never enlarged."""
    if max_size is None:
        return width, height
    scale = min(max_size[0] / width, max_size[1] / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


_READERS: dict[str, Callable[[str, int], Reader]] = {"pyav": PyAVReader, "decord": DecordReader}
