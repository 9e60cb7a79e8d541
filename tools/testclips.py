"""Synthetic clips whose every frame shows its own index, so a test can check which frame it got back.

Each frame carries a 24-cell grid of large black and white blocks at fixed positions relative to the
frame: 16 cells spell the frame index in binary, 8 more hold a checksum of it. The blocks are a tenth
of the frame wide or more, so the code survives lossy compression, chroma subsampling and downscaling
(a 1280×720 frame shrunk to 640×360, a portrait one to 202×360). Outside the grid a noise texture moves
a little every frame, so the encoder has real motion to code and decoding costs roughly what it costs
on footage rather than on flat colour.
"""
from __future__ import annotations

import os
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

GRID_ROWS, GRID_COLS = 4, 6
DATA_BITS, CHECK_BITS = 16, 8
GRID_BOX = (0.1, 0.1, 0.9, 0.9)  # x0, y0, x1, y1 as fractions of the displayed frame

# Encoder settings that keep synthetic clips quick to write; the decoders do not care. SVT-AV1's fastest
# presets and its temporal filter paste blocks of neighbouring frames into a frame, garbling the code.
_FAST_OPTIONS = {
    "libx264": {"preset": "veryfast"},
    "libx265": {"preset": "ultrafast", "x265-params": "log-level=error"},
    "libsvtav1": {"preset": "8", "crf": "20", "svtav1-params": "enable-tf=0"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "row-mt": "1"},
}
_CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".avi": "avi"}


def _texture(width: int, height: int) -> np.ndarray:
    """Blotchy grey noise, about as costly to code as grass or a crowd (per-pixel noise makes absurd keyframes)."""
    coarse = np.random.default_rng(7).integers(40, 216, (height // 8 + 1, width // 8 + 1), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))


def _checksum(index: int) -> int:
    return zlib.crc32(index.to_bytes(2, "big")) & 0xFF


def _bits(index: int) -> list[int]:
    word = (index << CHECK_BITS) | _checksum(index)
    return [(word >> (DATA_BITS + CHECK_BITS - 1 - i)) & 1 for i in range(DATA_BITS + CHECK_BITS)]


def _cell_edges(length: int, lo: float, hi: float, cells: int) -> np.ndarray:
    return np.round(np.linspace(lo * length, hi * length, cells + 1)).astype(int)


def index_image(index: int, width: int, height: int, *, texture: np.ndarray | None = None) -> np.ndarray:
    """The upright RGB picture (height×width×3 uint8) that stands for frame ``index``."""
    if not 0 <= index < 2**DATA_BITS:
        raise ValueError(f"frame index {index} does not fit in {DATA_BITS} bits")
    if texture is None:
        image = np.full((height, width), 128, np.uint8)
    else:
        image = np.roll(texture, 3 * index, axis=1).copy()
    xs = _cell_edges(width, GRID_BOX[0], GRID_BOX[2], GRID_COLS)
    ys = _cell_edges(height, GRID_BOX[1], GRID_BOX[3], GRID_ROWS)
    for cell, bit in enumerate(_bits(index)):
        row, col = divmod(cell, GRID_COLS)
        image[ys[row]:ys[row + 1], xs[col]:xs[col + 1]] = 235 if bit else 16
    return np.repeat(image[:, :, None], 3, axis=2)


def read_index(image: np.ndarray) -> int:
    """The frame index stamped into an upright picture by :func:`write_index_clip`.

    Accepts H×W×3 or H×W uint8 pixels at any size down to roughly 100 px a side. Raises ``ValueError``
    when the checksum does not match (not one of our frames, or rotated the wrong way).
    """
    gray = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    height, width = gray.shape
    xs = _cell_edges(width, GRID_BOX[0], GRID_BOX[2], GRID_COLS)
    ys = _cell_edges(height, GRID_BOX[1], GRID_BOX[3], GRID_ROWS)
    word = 0
    for cell in range(GRID_ROWS * GRID_COLS):
        row, col = divmod(cell, GRID_COLS)
        y0, y1, x0, x1 = ys[row], ys[row + 1], xs[col], xs[col + 1]
        # Only the middle of a cell: its edges blur into the neighbours when compressed or shrunk.
        inner = gray[y0 + (y1 - y0) // 3:y1 - (y1 - y0) // 3, x0 + (x1 - x0) // 3:x1 - (x1 - x0) // 3]
        word = (word << 1) | int(inner.mean() > 128)
    index, check = word >> CHECK_BITS, word & 0xFF
    if check != _checksum(index):
        raise ValueError("no frame-index code in this image (wrong clip, wrong orientation or damaged)")
    return index


def write_index_clip(
    path: str | Path,
    *,
    frames: int,
    fps: int = 30,
    size: tuple[int, int] = (1280, 720),
    codec: str = "libx264",
    gop: int = 60,
    pix_fmt: str | None = None,
    bframes: int | None = None,
    rotation: int = 0,
) -> Path:
    """Encode a clip of ``frames`` index-stamped frames with PyAV and return its path.

    Args:
        path: output file; the container follows the extension (.mp4, .mkv, .webm, .mov, .avi).
        frames: number of frames (at most 65536).
        fps: frame rate.
        size: (width, height) as displayed, i.e. after ``rotation`` is applied.
        codec: any PyAV encoder (libx264, libx265, libsvtav1, libvpx-vp9, mpeg4, mjpeg).
        gop: largest distance between keyframes (1 makes every frame a keyframe).
        pix_fmt: encoder pixel format (e.g. "yuv420p10le"); the encoder's usual one when None.
        bframes: most consecutive B-frames; the encoder's default when None.
        rotation: counter-clockwise degrees (0, 90, 180, 270) written as the display matrix; the
            coded pictures are turned the other way, so a reader that honours the matrix sees the
            code upright at ``size``.
    """
    path = Path(path)
    container_format = _CONTAINERS.get(path.suffix.lower())
    if container_format is None:
        raise ValueError(f"{path.name}: unknown container extension; use one of {', '.join(_CONTAINERS)}")
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, not {rotation}")
    turns = (rotation // 90) % 4
    width, height = size
    coded_width, coded_height = (height, width) if turns % 2 else (width, height)
    texture = _texture(width, height)
    if codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner to stderr unless told errors only

    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=Fraction(fps), options=_FAST_OPTIONS.get(codec, {}))
        stream.width, stream.height = coded_width, coded_height
        stream.pix_fmt = pix_fmt or ("yuvj420p" if codec == "mjpeg" else "yuv420p")
        stream.codec_context.gop_size = gop
        if bframes is not None:
            stream.codec_context.max_b_frames = bframes
        if turns:
            stream.set_display_rotation(90 * turns)
        for index in range(frames):
            picture = np.ascontiguousarray(np.rot90(index_image(index, width, height, texture=texture), -turns))
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_audio_only(path: str | Path, *, seconds: float = 1.0) -> Path:
    """An audio-only file (a 440 Hz tone, AAC in the container the extension names): a file with no video frames."""
    path = Path(path)
    rate = 48000
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = tone[start:start + 1024][None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_truncated(source: str | Path, path: str | Path, *, keep: float) -> Path:
    """A copy of ``source`` cut after its first ``keep`` fraction of bytes, as an interrupted download leaves it."""
    data = Path(source).read_bytes()
    path = Path(path)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


if __name__ == "__main__":  # python -m sportlens.tools.testclips OUT.mp4 --frames 900: a clip to try `ask` on
    import argparse

    parser = argparse.ArgumentParser(description="write an index-stamped test clip")
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=900)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.lower().split("x"))
    print(write_index_clip(args.out, frames=args.frames, size=(width, height)))
