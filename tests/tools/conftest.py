"""Index-stamped clips for the tools tests, encoded once per session and only when a test asks for them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from sportlens.tools.testclips import write_index_clip

SMALL = (320, 180)
FRAMES = 150  # 5 s at 30 fps

# name -> write_index_clip arguments. Small clips: exactness does not depend on size.
CLIPS: dict[str, dict[str, Any]] = {
    "h264_gop1.mp4": dict(codec="libx264", gop=1),
    "h264_gop12.mp4": dict(codec="libx264", gop=12),
    "h264_gop60_bframes.mp4": dict(codec="libx264", gop=60, bframes=3),
    "h264_10bit.mp4": dict(codec="libx264", gop=30, pix_fmt="yuv420p10le"),
    "h264.mkv": dict(codec="libx264", gop=30),
    "hevc_open_gop.mp4": dict(codec="libx265", gop=30),  # x265 defaults: open GOPs, B-frames
    "vp9.webm": dict(codec="libvpx-vp9", gop=30),
    "av1.mkv": dict(codec="libsvtav1", gop=30),
    "mpeg4_bframes.mp4": dict(codec="mpeg4", gop=30, bframes=2),
    "h264_1280x720.mp4": dict(codec="libx264", frames=30, size=(1280, 720)),
    "h264_portrait_720x1280.mp4": dict(codec="libx264", frames=30, size=(720, 1280)),
    "h264_320x240.mp4": dict(codec="libx264", frames=30, size=(320, 240)),
    "h264_rotated_90.mp4": dict(codec="libx264", frames=30, rotation=90),
    "h264_rotated_180.mp4": dict(codec="libx264", frames=30, rotation=180),
    "h264_rotated_270.mp4": dict(codec="libx264", frames=30, rotation=270),
}


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``clip(name)``: the path of the clip named in CLIPS, written on first use."""
    folder = tmp_path_factory.mktemp("clips")
    written: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in written:
            arguments = {"frames": FRAMES, "size": SMALL, **CLIPS[name]}
            written[name] = write_index_clip(folder / name, **arguments)
        return written[name]

    return get
