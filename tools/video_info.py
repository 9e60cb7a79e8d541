"""What is known about a video file once it is open: the one definition of the video metadata fields.

The agent's ``VideoSummary`` record and the REST API's models are built from ``VideoInfo``'s fields (their names,
types and ``description`` metadata), and a reader (``reader.Reader``) reports ``STREAM_FIELDS``: a field added
here appears in all of them. A leaf module (no decoder imported), so that the layers above can read it cheaply.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class VideoInfo:
    """What a Video holds. ``width``/``height`` are as displayed (after rotation), before ``max_size``.

    ``rotation`` is the counter-clockwise turn in degrees (0, 90, 180 or 270) that the display matrix
    asks for and that returned frames already have applied. ``reader`` is "pyav" or "decord".
    """

    path: str = field(metadata={"description": "the file as opened"})
    frames: int = field(metadata={"description": "frames in the main video stream, counted exactly"})
    fps: float = field(metadata={"description": "frames per second"})
    duration_s: float = field(metadata={"description": "seconds from the first frame to the end of the last"})
    width: int = field(metadata={"description": "pixels, as displayed (after rotation)"})
    height: int = field(metadata={"description": "pixels, as displayed (after rotation)"})
    codec: str = field(metadata={"description": "FFmpeg's canonical codec name, e.g. h264"})
    rotation: int = field(metadata={"description": "counter-clockwise degrees (0, 90, 180 or 270) the frames "
                                                   "were turned to stand upright"})
    reader: str = field(metadata={"description": "the decoding library in use: pyav or decord"})


# What a reader reports of the stream it decodes; the Video adds the path and the reader's name.
STREAM_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(VideoInfo) if f.name not in ("path", "reader"))
