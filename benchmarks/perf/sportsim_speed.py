"""How long SportSim takes to write clips: render + H.264 encode, all CPU cores in parallel.

    .venv/bin/python benchmarks/perf/sportsim_speed.py --n 10 --seconds 60

Prints seconds per clip and the time that ``--target`` clips would take at the same rate (the issue asks for
100 clips of 60 s; measuring 10 and extrapolating is linear because clips are independent jobs).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from sportlens.benchmarks.sportsim import SimSettings, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=int, default=12)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--target", type=int, default=100)
    args = parser.parse_args()
    settings = SimSettings(seconds=args.seconds, fps=args.fps)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        generate(out, n=args.n, seed=0, settings=settings, workers=args.workers)
        took = time.perf_counter() - started
    workers = args.workers or os.cpu_count()
    print(f"{args.n} clips of {args.seconds:g} s at {args.fps} fps, {settings.size[0]}x{settings.size[1]}, "
          f"{workers} workers: {took:.1f} s ({took / args.n:.2f} s a clip, "
          f"{args.n * settings.frames / took:.0f} frames/s)")
    print(f"{args.target} clips: about {took / args.n * args.target:.0f} s at this rate")


if __name__ == "__main__":
    main()
