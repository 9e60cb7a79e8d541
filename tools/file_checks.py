"""Whether a file can be a video at all: it exists and reads, starts like a media container, has a sane
resolution and holds as much video as its header declares. Each failure is a VideoError naming the file."""
from __future__ import annotations

import os

from .video_errors import CorruptVideo, NotAVideo, UnsupportedVideo, VideoError, VideoNotFound

MIN_SIDE, MAX_SIDE = 16, 8192

_CONTAINER_MAGIC: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"), (4, b"skip"),  # MP4 / MOV
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"RIFF"),  # AVI
    (0, b"FLV"), (0, b"OggS"), (0, b"\x00\x00\x01\xba"), (0, b"\x30\x26\xb2\x75"),  # FLV, Ogg, MPEG-PS, ASF
)


def looks_like_container(path: str) -> bool:
    """Whether the file starts like a media container (so a failure to open it means damage)."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if any(head[offset:offset + len(magic)] == magic for offset, magic in _CONTAINER_MAGIC):
        return True
    return len(head) > 188 and head[0] == head[188] == 0x47  # MPEG transport stream sync bytes


def check_file(path: str) -> None:
    """Raise a VideoError unless ``path`` is a readable, non-empty file, before any library opens it."""
    if not os.path.exists(path):
        raise VideoNotFound(f"{path}: no such file; check the path")
    if os.path.isdir(path):
        raise NotAVideo(f"{path} is a directory, not a video file; pass the path of a video file")
    if not os.access(path, os.R_OK):
        raise VideoNotFound(f"{path} cannot be read (permission denied); fix its permissions")
    if os.path.getsize(path) == 0:
        raise NotAVideo(f"{path} is empty (0 bytes); upload the video again")


def not_a_video(path: str) -> VideoError:
    """The error for a file that is no media container at all."""
    return NotAVideo(f"{path} is not a video file (no known container format); upload an .mp4, .mkv, .webm or .mov")


def no_frames(path: str, why: str = "") -> UnsupportedVideo:
    """The error for a container without video frames; ``why`` adds the detail, if known."""
    return UnsupportedVideo(f"{path} has no video frames{why}; upload a file with a video stream")


def check_resolution(path: str, width: int, height: int) -> None:
    """Raise :class:`UnsupportedVideo` unless both sides are between 16 and 8192 pixels."""
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise UnsupportedVideo(
            f"{path} is {width}×{height} pixels; videos must be {MIN_SIDE} to {MAX_SIDE} pixels a side: "
            "re-encode it at a normal resolution"
        )


def check_not_truncated(path: str, declared_s: float | None, held_s: float, frames: int) -> None:
    """A file whose header promises much more video than its packets hold was cut short."""
    if declared_s and declared_s - held_s > max(1.0, 0.05 * declared_s):
        raise CorruptVideo(
            f"{path} is truncated: it declares {declared_s:.1f} s of video but holds only "
            f"{held_s:.1f} s ({frames} frames); get the complete file again"
        )
