"""Open a video once, then take frame-exact, resized, upright RGB frames out of it.

The guarantees, stated once (tests/tools/test_video.py checks each):

- Frame ``i`` is the ``i``-th frame in presentation order of the file's main video stream, whatever
  the codec, keyframe spacing or B-frame reordering: exact, never "about there".
- Images are RGB uint8 (H×W×3), turned upright by the display matrix, shrunk to fit inside
  ``max_size`` with the aspect ratio kept, never enlarged.
- Each frame is labelled with its index and its presentation time in seconds from the first frame.
- No call decodes for longer than ``deadline_s``, nor waits longer than that for a decoding slot (a
  process decodes at most ``DECODING_SLOTS`` requests at once); every failure is a :class:`VideoError`
  whose message names the file and says what to do.
"""
from __future__ import annotations

import functools
import logging
import operator
import os
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Protocol, TypeVar

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from .frames import Frame, uniform_indices

log = logging.getLogger(__name__)

MIN_SIDE, MAX_SIDE = 16, 8192
READERS = ("auto", "pyav", "decord")

# Requests decoding at once in this process, every Video together; more wait their turn, first come first
# served. Half the cores: the other half stays with whatever else the machine runs, a model server above all.
# Where many questions decode at once (the service's workers), requests that all share the cores all finish
# late together and reach the model together; one after another, the first reaches the model early. Measured
# on the 2-core machine, 8 agent questions in flight through vLLM (one model thread): 1 slot answered 5.5%
# more questions/s than no limit (4 alternating pairs, 5.88 vs 6.22 s) — benchmarks/perf/vllm_agent.py.
DECODING_SLOTS = max(1, len(os.sched_getaffinity(0)) // 2)
_decoding = threading.BoundedSemaphore(DECODING_SLOTS)

T = TypeVar("T")


class VideoError(ValueError):
    """A video that cannot be used; the message names the file and says what to do about it."""


class VideoNotFound(VideoError):
    """No file at the path, or it cannot be read."""


class NotAVideo(VideoError):
    """The file is not a media container at all (a text file renamed .mp4, an empty file)."""


class CorruptVideo(VideoError):
    """A media container that is damaged: cut short, or its frames fail to decode."""


class UnsupportedVideo(VideoError):
    """A readable file that this tool will not handle: no video frames, or an absurd resolution."""


class DecodeTimeout(VideoError):
    """Decoding took longer than the deadline; the decoder was abandoned and the Video is unusable."""


@dataclass(frozen=True)
class VideoInfo:
    """What a Video holds. ``width``/``height`` are as displayed (after rotation), before ``max_size``.

    ``rotation`` is the counter-clockwise turn in degrees (0, 90, 180 or 270) that the display matrix
    asks for and that returned frames already have applied. ``reader`` is "pyav" or "decord".
    """

    path: str
    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    codec: str
    rotation: int
    reader: str


class _Reader(Protocol):
    """One decoding library behind a Video. All calls come from the Video's worker thread."""

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


class _ReaderCannot(Exception):
    """This reader cannot handle the file, though another one might; ``error`` is what to raise if none can."""

    def __init__(self, error: VideoError):
        super().__init__(str(error))
        self.error = error


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
        _check_file(self._path)

        self._worker = _Worker(f"video:{os.path.basename(self._path)}")
        # The reader in use sits in a list that the finalizer shares (it must not hold self), so that
        # close(), or garbage collection, closes whichever reader a fallback left in place.
        self._readers: list[_Reader] = []
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
        if not _decoding.acquire(timeout=self._deadline_s):
            raise DecodeTimeout(
                f"{self._path}: waited {self._deadline_s:g} s for one of the {DECODING_SLOTS} decoding slots of "
                "this process, all busy with other videos; ask again later"
            )
        try:
            decoded = self._call(lambda: self._read(wanted), f"decoding frames {wanted}")
        finally:
            _decoding.release()
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
    def _reader(self) -> _Reader:
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
        except _Overrun:
            self._broken = True
            raise DecodeTimeout(
                f"{self._path}: {doing} took longer than the {self._deadline_s:g} s deadline and was abandoned; "
                "the decoder may be stuck on a damaged file: re-encode it (or, if decord was reading it, "
                "use reader='pyav')"
            ) from None

    def _open(self) -> _Reader:
        first_refusal: _ReaderCannot | None = None
        for name in self._order:
            try:
                return _READERS[name](self._path, self._threads)
            except _ReaderCannot as refusal:
                log.info("%s: the %s reader cannot open it: %s", self._path, name, refusal)
                first_refusal = first_refusal or refusal
        assert first_refusal is not None
        raise first_refusal.error

    def _read(self, indices: list[int]) -> list[Frame]:
        size = self._output_size()
        try:
            return self._reader.read(indices, size)
        except _ReaderCannot as refusal:
            fallback = self._fallback_reader(refusal)
            self._reader.close()
            self._readers[0] = fallback
            self._info = self._describe(fallback)
            return fallback.read(indices, size)

    def _fallback_reader(self, refusal: _ReaderCannot) -> _Reader:
        """In auto mode, the next reader, if it sees the same frames; else the first reader's error."""
        names = self._order[self._order.index(self._reader.name) + 1:]
        for name in names:
            try:
                fallback = _READERS[name](self._path, self._threads)
            except (_ReaderCannot, VideoError):
                continue
            if fallback.frames == self._reader.frames:
                log.warning("%s: %s failed (%s); continuing with %s", self._path, self._reader.name, refusal, name)
                return fallback
            fallback.close()
        raise refusal.error

    def _output_size(self) -> tuple[int, int]:
        return fit_size(self._reader.width, self._reader.height, self._max_size)

    def _describe(self, reader: _Reader) -> VideoInfo:
        return VideoInfo(
            path=self._path,
            frames=reader.frames,
            fps=reader.fps,
            duration_s=reader.duration_s,
            width=reader.width,
            height=reader.height,
            codec=reader.codec,
            rotation=reader.rotation,
            reader=reader.name,
        )


def _close_all(readers: list[_Reader]) -> None:
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


def check_resolution(path: str, width: int, height: int) -> None:
    """Raise :class:`UnsupportedVideo` unless both sides are between 16 and 8192 pixels."""
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise UnsupportedVideo(
            f"{path} is {width}×{height} pixels; videos must be {MIN_SIDE} to {MAX_SIDE} pixels a side: "
            "re-encode it at a normal resolution"
        )


# ---------------------------------------------------------------------------------------------------
# Recognising what a file is


_CONTAINER_MAGIC: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"), (4, b"skip"),  # MP4 / MOV
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"RIFF"),  # AVI
    (0, b"FLV"), (0, b"OggS"), (0, b"\x00\x00\x01\xba"), (0, b"\x30\x26\xb2\x75"),  # FLV, Ogg, MPEG-PS, ASF
)


def _looks_like_container(path: str) -> bool:
    """Whether the file starts like a media container (so a failure to open it means damage)."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if any(head[offset:offset + len(magic)] == magic for offset, magic in _CONTAINER_MAGIC):
        return True
    return len(head) > 188 and head[0] == head[188] == 0x47  # MPEG transport stream sync bytes


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoNotFound(f"{path}: no such file; check the path")
    if os.path.isdir(path):
        raise NotAVideo(f"{path} is a directory, not a video file; pass the path of a video file")
    if not os.access(path, os.R_OK):
        raise VideoNotFound(f"{path} cannot be read (permission denied); fix its permissions")
    if os.path.getsize(path) == 0:
        raise NotAVideo(f"{path} is empty (0 bytes); upload the video again")


def _not_a_video(path: str) -> VideoError:
    return NotAVideo(f"{path} is not a video file (no known container format); upload an .mp4, .mkv, .webm or .mov")


def _no_frames(path: str, why: str = "") -> UnsupportedVideo:
    return UnsupportedVideo(f"{path} has no video frames{why}; upload a file with a video stream")


# ---------------------------------------------------------------------------------------------------
# The PyAV reader


class _FrameMissing(Exception):
    """The decoder went past a frame the index promised without producing it."""


# Decoders that read skip_frame anew for every packet. (libdav1d, for one, reads it once when it opens.)
_SKIPS_PER_PACKET = frozenset({"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video", "h263"})
_KEYFRAME_COST = 5  # decoding a keyframe costs about as much as this many other frames


@dataclass(frozen=True)
class _PacketIndex:
    """What one demux pass learns. Frame i has pts ``pts[i]``; decoding it starts at the packet with pts
    ``key_of[i]``; ``position`` maps a pts to its packet's place in decode order."""

    pts: np.ndarray
    seconds: np.ndarray
    key_of: np.ndarray
    key_pts: np.ndarray
    position: dict[int, int]
    first_pts: int

    def key_position(self, index: int) -> int:
        return self.position[int(self.key_of[index])]

    def own_position(self, index: int) -> int:
        return self.position[int(self.pts[index])]


class _PyAVReader:
    """Exact random access with PyAV: a packet index from one demux pass, then seek-and-decode on
    ``threads`` decoders, each with its own handle of the file, that split a request's GOPs."""

    name = "pyav"

    def __init__(self, path: str, threads: int):
        self.path = path
        self._decoders: list[_Decoder] = []
        self._helpers: list[_Worker] = []
        container = self._open_container()
        try:
            stream = self._pick_stream(container)
            check_resolution(path, stream.codec_context.width, stream.codec_context.height)
            _decode_only(container, stream)
            self._index = self._scan(container, stream)
            self._decoders.append(_Decoder(path, container, stream, self._index))
        except BaseException:
            container.close()
            raise
        try:
            rotation = self._decoders[0].first_rotation()
            for _ in range(threads - 1):
                extra = self._open_container()
                self._decoders.append(_Decoder(path, extra, extra.streams[stream.index], self._index))
                self._helpers.append(_Worker(f"decoder:{os.path.basename(path)}"))
        except BaseException:
            self.close()
            raise
        for decoder in self._decoders:
            decoder.rotation = rotation
        self.rotation = rotation
        coded = (stream.codec_context.width, stream.codec_context.height)
        self.width, self.height = coded[::-1] if rotation % 180 else coded
        self.codec = stream.codec_context.codec.canonical_name

    def _open_container(self) -> av.container.InputContainer:
        try:
            return av.open(self.path, metadata_errors="replace")
        except FileNotFoundError:
            raise VideoNotFound(f"{self.path}: no such file; check the path") from None
        except PermissionError:
            raise VideoNotFound(f"{self.path} cannot be read (permission denied); fix its permissions") from None
        except av.error.EOFError:
            raise _no_frames(self.path, " (the file ends before its first frame)") from None
        except av.FFmpegError as error:
            if _looks_like_container(self.path):
                raise CorruptVideo(
                    f"{self.path} is damaged and cannot be opened ({error.strerror}); it may be cut short "
                    "(an interrupted download or copy): get the complete file again"
                ) from None
            raise _not_a_video(self.path) from None

    def _pick_stream(self, container: av.container.InputContainer) -> av.video.stream.VideoStream:
        candidates = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not candidates:
            raise _no_frames(self.path)
        best = container.streams.best("video")
        stream = best if best in candidates else candidates[0]
        if stream.codec_context is None:
            codec = stream.codec.name if stream.codec else "unknown"
            raise _ReaderCannot(UnsupportedVideo(
                f"{self.path}: its {codec} video cannot be decoded here; re-encode it to H.264"
            ))
        return stream

    def _scan(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> _PacketIndex:
        """Demux (never decode) the whole stream once: timestamps, keyframes, true frame count."""
        decode_pts: list[int] = []
        keyframe: list[bool] = []
        shown: list[bool] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                pts = packet.pts if packet.pts is not None else packet.dts
                if pts is None:
                    raise _ReaderCannot(UnsupportedVideo(
                        f"{self.path} has no timestamps on its video packets; remux it into .mp4 or .mkv"
                    ))
                decode_pts.append(pts)
                keyframe.append(packet.is_keyframe)
                shown.append(not packet.is_discard)
        except av.FFmpegError as error:
            raise CorruptVideo(
                f"{self.path} is damaged: reading it failed after {len(decode_pts)} frames ({error.strerror}); "
                "get the complete file again or re-encode it"
            ) from None
        in_decode_order = np.array(decode_pts, dtype=np.int64)
        pts = np.unique(in_decode_order[np.array(shown, dtype=bool)])  # presentation order
        if len(pts) == 0:
            raise _no_frames(self.path)
        is_key = np.array(keyframe)
        is_key[0] = is_key[0] or not is_key.any()
        key_pts = np.sort(in_decode_order[is_key])
        # Decoding frame i starts at the latest keyframe at or before it in presentation order; frames
        # shown before the first keyframe start from the first packet.
        slot = np.searchsorted(key_pts, pts, side="right") - 1
        key_of = np.where(slot >= 0, key_pts[np.maximum(slot, 0)], in_decode_order[0])

        time_base = stream.time_base
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.frames = len(pts)
        span = float((pts[-1] - pts[0]) * time_base)
        self.fps = float(rate) if rate else (self.frames - 1) / span if span > 0 else 1.0
        self.duration_s = span + 1 / self.fps
        _check_not_truncated(self.path, _declared_seconds(container, stream), self.duration_s, self.frames)
        return _PacketIndex(
            pts=pts,
            seconds=(pts - pts[0]) * float(time_base),
            key_of=key_of,
            key_pts=key_pts,
            position={int(p): i for i, p in enumerate(decode_pts)},
            first_pts=int(min(in_decode_order.min(), pts[0])),
        )

    def read(self, indices: list[int], size: tuple[int, int]) -> list[Frame]:
        targets = {int(self._index.pts[index]) for index in indices}
        shares = self._share(indices)
        helping = [
            helper.submit(functools.partial(decoder.read, share, size, targets))
            for helper, decoder, share in zip(self._helpers, self._decoders[1:], shares[1:])
            if share
        ]
        try:
            frames = self._decoders[0].read(shares[0], size, targets)
        finally:
            wait(helping)  # nothing may touch a decoder (a fallback closes them) while a helper uses it
        for future in helping:
            frames += future.result()
        return sorted(frames, key=lambda frame: frame.index)

    def _share(self, indices: list[int]) -> list[list[int]]:
        """Split the targets, whole GOPs at a time, so that every decoder gets about the same decoding work.

        Each GOP's targets cost a seek and a decode from its keyframe wherever they go, so the GOPs need not
        stay in runs: the costliest goes first, each to the decoder with the least work so far. Runs of
        neighbours gave one decoder both costly GOPs when the work grew along the request (one frame per GOP,
        each further from its keyframe than the last).
        """
        groups: list[list[int]] = []
        for index in indices:
            if groups and self._index.key_of[groups[-1][0]] == self._index.key_of[index]:
                groups[-1].append(index)
            else:
                groups.append([index])
        costs = [
            self._index.own_position(group[-1]) - self._index.key_position(group[0]) + _KEYFRAME_COST
            for group in groups
        ]
        shares: list[list[int]] = [[] for _ in self._decoders]
        work = [0] * len(shares)
        for cost, group in sorted(zip(costs, groups), key=lambda pair: -pair[0]):
            least = work.index(min(work))
            shares[least].extend(group)
            work[least] += cost
        return [sorted(share) for share in shares]

    def close(self) -> None:
        for helper in self._helpers:
            helper.stop()
        for decoder in self._decoders:
            decoder.close()


def _decode_only(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> None:
    """Have the demuxer drop every other stream, and decode on the calling thread alone.

    FFmpeg's frame threading refills its pipeline after every seek and measured slower here than
    several single-threaded decoders working on different GOPs.
    """
    for other in container.streams:
        if other is not stream:
            other.discard = av.stream.Discard.all
    stream.codec_context.thread_type = "NONE"
    stream.codec_context.thread_count = 1


class _Decoder:
    """One demuxer and decoder over the file, and where they stand in it."""

    def __init__(
        self, path: str, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
        index: _PacketIndex,
    ):
        _decode_only(container, stream)
        self.path = path
        self.rotation = 0
        self._container, self._stream, self._index = container, stream, index
        self._packets: Iterator[av.Packet] | None = None
        self._fed = -1  # decode-order position of the last packet fed since the last seek
        self._last_out: int | None = None  # pts of the last frame the decoder gave back
        self._ready: deque[av.VideoFrame] = deque()
        self._targets: set[int] = set()  # pts of the frames the current request wants
        self._skipped: set[int] = set()  # pts fed under skip_frame since the last seek
        self._skips = stream.codec_context.codec.name in _SKIPS_PER_PACKET
        self._skip = "DEFAULT"
        self._reformatter = VideoReformatter()

    def first_rotation(self) -> int:
        """Decode the first frame: it proves the stream decodes and carries the display matrix."""
        try:
            self._seek(None)
            while not self._ready and self._packets is not None:
                self._feed()
        except (av.FFmpegError, _FrameMissing):
            self._ready.clear()
        if not self._ready:
            raise _ReaderCannot(CorruptVideo(f"{self.path} is damaged: its first frame does not decode; re-encode it"))
        frame = self._ready.popleft()
        self._last_out = frame.pts
        return round(frame.rotation / 90) % 4 * 90

    def read(self, indices: list[int], size: tuple[int, int], targets: set[int]) -> list[Frame]:
        """Frames at ``indices`` (ascending); ``targets`` holds the pts of every frame the request wants."""
        self._targets = targets
        frames = []
        for position, index in enumerate(indices):
            following = indices[position + 1] if position + 1 < len(indices) else None
            try:
                decoded = self._decode(index, following)
            except av.FFmpegError as error:
                self._packets = None
                raise CorruptVideo(
                    f"{self.path} is damaged: decoding frame {index} failed ({error.strerror}); re-encode the file"
                ) from None
            except _FrameMissing:
                self._packets = None
                raise _ReaderCannot(CorruptVideo(
                    f"{self.path}: frame {index} could not be found by seeking; re-encode the file"
                )) from None
            frames.append(Frame(index, float(self._index.seconds[index]), self._to_rgb(decoded, size)))
        return frames

    def _decode(self, index: int, following: int | None) -> av.VideoFrame:
        target = int(self._index.pts[index])
        if not self._can_continue_to(index):
            self._seek_before(index)
        # A decoder that reorders holds a frame back until a few later packets arrive. When the next
        # target needs a seek anyway, draining the decoder hands the frame over without decoding those.
        own_packet = self._index.own_position(index)
        may_drain = following is None or self._index.key_position(following) > own_packet + 1
        while True:
            while self._ready:
                frame = self._ready.popleft()
                pts = frame.pts if frame.pts is not None else frame.dts
                self._last_out = pts
                if pts == target:
                    return frame
                if pts is not None and pts > target:
                    raise _FrameMissing(index)
            if self._packets is None:
                raise _FrameMissing(index)
            if may_drain and self._fed >= own_packet:
                self._ready.extend(self._stream.codec_context.decode(None))
                self._packets = None  # a drained decoder takes no more packets until the next seek
            else:
                self._feed()

    def _can_continue_to(self, index: int) -> bool:
        """Decoding on from where the decoder is costs no more than seeking to the frame's keyframe."""
        if self._packets is None:
            return False
        target = int(self._index.pts[index])
        if target in self._skipped or (self._last_out is not None and target <= self._last_out):
            return False  # went past it, or fed its packet under skip_frame
        return self._index.key_position(index) <= self._fed + 1

    def _seek_before(self, index: int) -> None:
        """Seek so that the first packet is the keyframe that decoding ``index`` starts from, or an earlier one."""
        wanted = self._index.key_position(index)
        key_pts = self._index.key_pts
        earlier = key_pts[key_pts <= self._index.key_of[index]][::-1]
        for pts in [*earlier[:3].tolist(), None]:
            self._seek(pts)
            if self._feed() and self._fed <= wanted:
                return
        raise _FrameMissing(index)

    def _seek(self, pts: int | None) -> None:
        """Seek to the keyframe at or before ``pts`` (None: the first packet); no packet fed yet."""
        try:
            self._container.seek(self._index.first_pts if pts is None else pts, stream=self._stream, backward=True)
        except av.FFmpegError:
            raise _FrameMissing(pts) from None
        self._packets = self._container.demux(self._stream)
        self._ready.clear()
        self._skipped.clear()
        self._fed = -1
        self._last_out = None

    def _feed(self) -> bool:
        """Give the decoder one more packet; False at the end of the stream.

        Packets of frames nobody asked for go in under ``skip_frame="NONREF"`` where the decoder honours
        that per packet: it then skips the frames no other frame refers to. Exact, and cheaper.
        """
        assert self._packets is not None
        packet = next(self._packets, None)
        if packet is None:
            self._packets = None
            return False
        pts = packet.pts if packet.pts is not None else packet.dts
        if pts in self._index.position:
            self._fed = self._index.position[pts]
        context = self._stream.codec_context
        if self._skips:
            skip = "DEFAULT" if pts in self._targets or not packet.size else "NONREF"
            if skip != self._skip:
                context.skip_frame = self._skip = skip
            if skip == "NONREF":
                self._skipped.add(pts)
        self._ready.extend(context.decode(packet))
        return True

    def _to_rgb(self, frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
        """Convert and shrink in one swscale pass (its context is kept between frames: 10× cheaper)."""
        turns = self.rotation // 90
        width, height = size[::-1] if turns % 2 else size
        rgb = self._reformatter.reformat(frame, width, height, "rgb24", interpolation="AREA").to_ndarray()
        return np.ascontiguousarray(np.rot90(rgb, turns) if turns else rgb)  # rows may be padded

    def close(self) -> None:
        self._container.close()


# ---------------------------------------------------------------------------------------------------
# The decord reader


class _DecordReader:
    """decord's VideoReader.get_batch, resized with Pillow; codec and rotation come from a PyAV probe."""

    name = "decord"

    def __init__(self, path: str, threads: int):
        import decord

        decord.logging.set_level(decord.logging.QUIET)  # its FFmpeg logs to stderr; failures reach us as errors
        self.path = path
        try:
            self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
            self.frames = len(self._reader)
            first = self._reader[0] if self.frames else None
        except (decord.DECORDError, RuntimeError) as error:
            if not _looks_like_container(path):
                raise _not_a_video(path) from None
            raise _ReaderCannot(UnsupportedVideo(
                f"{path}: decord cannot open it ({_first_line(error)}); use reader='pyav'"
            )) from None
        if first is None:
            raise _no_frames(path)
        self.height, self.width = first.shape[:2]  # decord applies the display matrix itself
        check_resolution(path, self.width, self.height)
        self.fps = float(self._reader.get_avg_fps())
        self.duration_s = self.frames / self.fps
        self.codec, self.rotation, declared_s = _probe_header(path)
        _check_not_truncated(path, declared_s, self.duration_s, self.frames)

    def read(self, indices: list[int], size: tuple[int, int]) -> list[Frame]:
        import decord

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
            return stream.codec_context.codec.canonical_name, rotation, _declared_seconds(container, stream)
    except (av.FFmpegError, IndexError, StopIteration):
        return "unknown", 0, None


def _declared_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """How long the header says the video stream lasts, if it says."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if "DURATION" in stream.metadata:  # Matroska's per-track tag
        hours, minutes, seconds = stream.metadata["DURATION"].split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if len(container.streams) == 1 and container.duration:  # the container's duration is the video's
        return container.duration / av.time_base
    return None


def _check_not_truncated(path: str, declared_s: float | None, held_s: float, frames: int) -> None:
    """A file whose header promises much more video than its packets hold was cut short."""
    if declared_s and declared_s - held_s > max(1.0, 0.05 * declared_s):
        raise CorruptVideo(
            f"{path} is truncated: it declares {declared_s:.1f} s of video but holds only "
            f"{held_s:.1f} s ({frames} frames); get the complete file again"
        )


_READERS: dict[str, Callable[[str, int], _Reader]] = {"pyav": _PyAVReader, "decord": _DecordReader}


# ---------------------------------------------------------------------------------------------------
# The worker thread that lets a caller stop waiting on a stuck decoder


class _Worker:
    """One daemon thread running decoder calls in order, for a Video or for one of its extra decoders.

    A daemon thread, not a ThreadPoolExecutor: executor threads are joined at interpreter exit, so a
    decoder deadlocked in C would hang the process on the way out.
    """

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object] | None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            work, future = job
            if future is None:
                try:
                    work()
                except Exception:
                    log.exception("cleanup on the decoder thread failed")
                continue
            try:
                future.set_result(work())
            except BaseException as error:
                future.set_exception(error)

    def submit(self, work: Callable[[], T]) -> Future[T]:
        """Queue ``work`` for the thread; the Future holds its result."""
        future: Future[T] = Future()
        self._jobs.put((work, future))
        return future

    def run(self, work: Callable[[], T], timeout: float) -> T:
        """Run ``work`` on the thread; raise ``_Overrun`` if it has not finished after ``timeout`` s."""
        future = self.submit(work)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():
                raise  # the work itself raised TimeoutError
            raise _Overrun from None

    def stop(self, cleanup: Callable[[], object] | None = None) -> None:
        """Run ``cleanup`` (if any) after the queued calls, then end the thread."""
        if cleanup is not None:
            self._jobs.put((cleanup, None))
        self._jobs.put(None)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class _Overrun(Exception):
    """A call on the worker thread did not finish in time."""
