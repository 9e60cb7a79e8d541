"""The PyAV reader: exact random access to a video's frames by index, from a packet index and seek-and-decode."""
from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import wait
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .decoding_threads import Worker
from .file_checks import check_not_truncated, check_resolution, looks_like_container, no_frames, not_a_video
from .frames import Frame
from .reader import ReaderCannot
from .video_errors import CorruptVideo, UnsupportedVideo, VideoNotFound


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


class PyAVReader:
    """Exact random access with PyAV: a packet index from one demux pass, then seek-and-decode on
    ``threads`` decoders, each with its own handle of the file, that split a request's GOPs."""

    name = "pyav"

    def __init__(self, path: str, threads: int):
        self.path = path
        self._decoders: list[Decoder] = []
        self._helpers: list[Worker] = []
        container = self._open_container()
        try:
            stream = self._pick_stream(container)
            check_resolution(path, stream.codec_context.width, stream.codec_context.height)
            _decode_only(container, stream)
            self._index = self._scan(container, stream)
            self._decoders.append(Decoder(path, container, stream, self._index))
        except BaseException:
            container.close()
            raise
        try:
            rotation = self._decoders[0].first_rotation()
            for _ in range(threads - 1):
                extra = self._open_container()
                self._decoders.append(Decoder(path, extra, extra.streams[stream.index], self._index))
                self._helpers.append(Worker(f"decoder:{os.path.basename(path)}"))
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
            raise no_frames(self.path, " (the file ends before its first frame)") from None
        except av.FFmpegError as error:
            if looks_like_container(self.path):
                raise CorruptVideo(
                    f"{self.path} is damaged and cannot be opened ({error.strerror}); it may be cut short "
                    "(an interrupted download or copy): get the complete file again"
                ) from None
            raise not_a_video(self.path) from None

    def _pick_stream(self, container: av.container.InputContainer) -> av.video.stream.VideoStream:
        candidates = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not candidates:
            raise no_frames(self.path)
        best = container.streams.best("video")
        stream = best if best in candidates else candidates[0]
        if stream.codec_context is None:
            codec = stream.codec.name if stream.codec else "unknown"
            raise ReaderCannot(UnsupportedVideo(
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
                    raise ReaderCannot(UnsupportedVideo(
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
            raise no_frames(self.path)
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
        check_not_truncated(self.path, declared_seconds(container, stream), self.duration_s, self.frames)
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


class Decoder:
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
            raise ReaderCannot(CorruptVideo(f"{self.path} is damaged: its first frame does not decode; re-encode it"))
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
                raise ReaderCannot(CorruptVideo(
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


def declared_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """How long the header says the video stream lasts, if it says."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if "DURATION" in stream.metadata:  # Matroska's per-track tag
        hours, minutes, seconds = stream.metadata["DURATION"].split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if len(container.streams) == 1 and container.duration:  # the container's duration is the video's
        return container.duration / av.time_base
    return None
