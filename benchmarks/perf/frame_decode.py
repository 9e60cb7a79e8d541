"""How fast does ``Video.choose_frames`` get 8 exact frames out of a long clip, against decord and the decode floor?

    .venv/bin/python benchmarks/perf/frame_decode.py [--work DIR] [--repeats 7]

The clip (5 minutes, 1280×720, 30 fps, H.264, a keyframe every 60 frames, every frame stamped with its
index) is written once into --work and reused; writing it takes about two minutes on 2 cores.

Two requests, as the agent makes them: (a) 8 frames uniform over the whole clip, (b) 8 frames inside a
10-second window in the middle. For each:

- ours: ``Video.choose_frames`` on a Video opened beforehand, with its default 2 decoders and with 1;
  the first call and a second identical call.
- decord: ``VideoReader.get_batch`` on the same indices on a reader opened beforehand (its default
  threads), then a resize to 640×360 so both sides hand back the same pixels.
- floor: the frames that must be decoded (from each target's keyframe up to the target, a frame
  shared by two targets of one GOP counted once) × the mean time per frame of a plain sequential
  decode by one single-threaded decoder. A second line prices the keyframes at what a keyframe costs
  (several P-frames' worth) instead of the mean: the decoding no exact reader can avoid.

Each figure is the median of --repeats runs, each on a freshly opened reader, the contenders
interleaved run by run. Targets: ours ≥ 2× faster than decord and ≤ 1.3× the floor.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import decord
import numpy as np
from PIL import Image

from sportlens.tools.frames import uniform_indices
from sportlens.tools.testclips import read_index, write_index_clip
from sportlens.tools.video import Video

FPS, SECONDS, GOP, SIZE = 30, 300, 60, (1280, 720)
OUT_SIZE = (640, 360)


def clip_path(work: Path) -> Path:
    path = work / f"index_{SIZE[0]}x{SIZE[1]}_{FPS}fps_gop{GOP}_{SECONDS}s.mp4"
    if not path.exists():
        print(f"writing {path} (once; about two minutes) ...", flush=True)
        partial = path.with_suffix(".partial.mp4")
        write_index_clip(partial, frames=FPS * SECONDS, fps=FPS, size=SIZE, codec="libx264", gop=GOP)
        partial.rename(path)
    return path


def keyframe_indices(path: Path) -> list[int]:
    """Presentation indices of the keyframes, from one demux pass."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
    order = {pts: i for i, pts in enumerate(sorted(pts for pts, _ in packets))}
    return sorted(order[pts] for pts, key in packets if key)


def frames_to_decode(targets: list[int], keyframes: list[int]) -> tuple[int, int]:
    """(frames, GOPs): from each target's keyframe to the furthest target of that GOP, each frame once."""
    furthest: dict[int, int] = {}
    for target in targets:
        key = max(k for k in keyframes if k <= target)
        furthest[key] = max(furthest.get(key, key), target)
    return sum(last - key + 1 for key, last in furthest.items()), len(furthest)


def sequential_decode(path: Path, start: int, count: int) -> tuple[float, float, float]:
    """Seconds per frame over ``count`` frames decoded in order from the keyframe ``start`` by one
    single-threaded decoder (no conversion), and separately per keyframe and per other frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "NONE"
        container.seek(int(start / FPS / stream.time_base), stream=stream)
        spent: dict[bool, list[float]] = {True: [], False: []}
        for packet in container.demux(stream):
            began = time.perf_counter()
            stream.codec_context.decode(packet)
            spent[packet.is_keyframe].append(time.perf_counter() - began)
            if len(spent[True]) + len(spent[False]) == count:
                break
    total = sum(spent[True]) + sum(spent[False])
    return total / count, statistics.mean(spent[True]), statistics.mean(spent[False])


def timed(work: Callable[[], object]) -> tuple[float, object]:
    began = time.perf_counter()
    result = work()
    return time.perf_counter() - began, result


def exact(indices: list[int], images: list[np.ndarray]) -> bool:
    try:
        return [read_index(image) for image in images] == indices and images[0].shape[:2] == OUT_SIZE[::-1]
    except ValueError:
        return False


def run_ours(path: Path, window: tuple[int, int], threads: int) -> tuple[float, float, float, bool]:
    """(open, first call, second call, exact) for a freshly opened Video."""
    indices = uniform_indices(*window, 8)
    opening, video = timed(lambda: Video(path, reader="pyav", threads=threads))
    with video:
        first, frames = timed(lambda: video.choose_frames(*window, 8))
        ok = exact(indices, [f.image for f in frames])
        second, frames = timed(lambda: video.choose_frames(*window, 8))
        ok &= exact(indices, [f.image for f in frames])
    return opening, first, second, ok


def run_decord(path: Path, window: tuple[int, int]) -> tuple[float, float, float, bool]:
    """(open, first call, second call, exact) for a freshly opened decord VideoReader, resizing as ours does."""
    indices = uniform_indices(*window, 8)

    def batch() -> list[np.ndarray]:
        pixels = reader.get_batch(indices).asnumpy()
        return [np.asarray(Image.fromarray(p).resize(OUT_SIZE, Image.Resampling.BOX)) for p in pixels]

    opening, reader = timed(lambda: decord.VideoReader(str(path), ctx=decord.cpu(0)))
    first, images = timed(batch)
    ok = exact(indices, images)
    second, images = timed(batch)
    ok &= exact(indices, images)
    return opening, first, second, ok


def medians(runs: list[tuple[float, float, float, bool]]) -> tuple[float, float, float, bool]:
    opening, first, second, ok = zip(*runs)
    return statistics.median(opening), statistics.median(first), statistics.median(second), all(ok)


def main(work: Path, repeats: int) -> None:
    work.mkdir(parents=True, exist_ok=True)
    path = clip_path(work)
    frames = FPS * SECONDS
    middle = frames // 2
    requests = {  # (start, end) of choose_frames(start, end, 8)
        "uniform, whole clip": (0, frames - 1),
        "10-s window, middle": (middle - 5 * FPS, middle + 5 * FPS - 1),
    }
    keyframes = keyframe_indices(path)
    decord.VideoReader(str(path), ctx=decord.cpu(0))  # warm the page cache and both libraries
    Video(path, reader="pyav").close()

    # Interleave the contenders run by run, so that load from elsewhere on the machine hits all alike.
    contenders = {  # name: (what its opening is, one run)
        "Video.choose_frames, 2 decoders": ("Video(threads=2)", lambda window: run_ours(path, window, threads=2)),
        "Video.choose_frames, 1 decoder": ("Video(threads=1)", lambda window: run_ours(path, window, threads=1)),
        "decord get_batch + resize": ("decord VideoReader", lambda window: run_decord(path, window)),
    }
    sequential = []
    runs: dict[tuple[str, str], list] = {(r, c): [] for r in requests for c in contenders}
    for _ in range(repeats):
        sequential.append(sequential_decode(path, middle - middle % GOP, 600))
        for request, window in requests.items():
            for contender, (_, run) in contenders.items():
                runs[request, contender].append(run(window))
    per_frame, per_key, per_other = (statistics.median(column) for column in zip(*sequential))

    print(f"clip: {path.name}, {frames} frames, {len(keyframes)} keyframes; PyAV {av.__version__}, "
          f"decord {decord.__version__}; medians of {repeats} interleaved runs")
    print(f"sequential decode, 1 decoder: {1 / per_frame:.0f} frames/s = {per_frame * 1e3:.2f} ms/frame "
          f"(keyframes {per_key * 1e3:.2f} ms, other frames {per_other * 1e3:.2f} ms)\n")
    header = (f"{'request':<20} {'method':<34} {'1st call':>9} {'2nd call':>9} "
              f"{'/decord':>8} {'/floor':>7} {'/floor k':>9}  exact")
    print(header)
    print("-" * len(header))
    opens = {}
    for request, window in requests.items():
        needed, gops = frames_to_decode(uniform_indices(*window, 8), keyframes)
        floor = needed * per_frame
        keyed_floor = gops * per_key + (needed - gops) * per_other
        decord_first = medians(runs[request, "decord get_batch + resize"])[1]
        for row, (contender, (opener, _)) in enumerate(contenders.items()):
            opening, first, second, ok = medians(runs[request, contender])
            opens[opener] = opening
            label = "" if row else request
            print(f"{label:<20} {contender:<34} {first * 1e3:>7.0f}ms {second * 1e3:>7.0f}ms "
                  f"{first / decord_first:>7.2f}x {first / floor:>6.2f}x {first / keyed_floor:>8.2f}x  {ok}")
        print(f"{'':<20} {f'floor: {needed} frames x mean':<34} {floor * 1e3:>7.0f}ms")
        print(f"{'':<20} {f'floor k: {gops} keyframes + {needed - gops} others':<34} {keyed_floor * 1e3:>7.0f}ms")
    print("\nopening (median): " + "; ".join(f"{name}: {seconds * 1e3:.0f} ms" for name, seconds in opens.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sportlens-bench",
                        help="folder for the generated clip (default: $TMPDIR/sportlens-bench)")
    parser.add_argument("--repeats", type=int, default=7, help="runs per measurement; the median is reported")
    arguments = parser.parse_args()
    main(arguments.work, arguments.repeats)
