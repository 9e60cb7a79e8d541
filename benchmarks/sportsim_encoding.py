"""Encoding a SportSim clip: every frame of a simulation into an H.264 MP4 with PyAV."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from sportlens.benchmarks.sportsim_simulation import Simulation


def write_clip(sim: Simulation, path: Path, *, threads: int = 1) -> Path:
    """Encode every frame of a simulation with PyAV as H.264 (yuv420p, CRF ``settings.crf``)."""
    settings = sim.settings
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264", rate=Fraction(settings.fps), options={"preset": "veryfast", "crf": str(settings.crf)}
        )
        stream.width, stream.height = settings.size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = max(1, int(settings.gop_seconds * settings.fps))
        stream.codec_context.thread_count = threads
        for t in range(settings.frames):
            frame = av.VideoFrame.from_ndarray(sim.frame(t), format="rgb24")
            frame.pts = t
            frame.time_base = Fraction(1, settings.fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
