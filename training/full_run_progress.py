"""What a full run says as it goes: a line when a stage starts and when it ends, every stage's figures in
``timings.json``; and the torch threads each of its processes uses.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from sportlens.training.full_run_config import STAGES


class Progress:
    """Prints a line when a stage starts and when it ends, and keeps every stage's figures in ``timings.json``.

    A stage stopped unfinished (SFT on its ``max_seconds``) keeps its seconds in ``unfinished.json``; the invocation
    that finishes it records the seconds of all of them, those before as ``earlier_invocations_s``.
    """

    def __init__(self, out: Path, publish: Path | None) -> None:
        self.path, self.publish = out / "timings.json", publish
        self.timings: dict[str, dict] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self._unfinished_path = out / "unfinished.json"
        self._unfinished: dict[str, float] = (json.loads(self._unfinished_path.read_text())
                                              if self._unfinished_path.exists() else {})
        self._started: dict[str, float] = {}

    def start(self, stage: str, what: str) -> None:
        self._started[stage] = time.perf_counter()
        print(f"[{STAGES.index(stage) + 1}/{len(STAGES)}] {stage}: {what}", flush=True)

    def elapsed(self, stage: str) -> float:
        return time.perf_counter() - self._started[stage]

    def stopped(self, stage: str) -> None:
        """The stage stopped before its end, to be resumed: its seconds so far are kept for :meth:`done`."""
        self._unfinished[stage] = round(self._unfinished.get(stage, 0.0) + self.elapsed(stage), 2)
        self._unfinished_path.write_text(json.dumps(self._unfinished, indent=2) + "\n")

    def done(self, stage: str, **figures) -> None:
        earlier = self._unfinished.pop(stage, 0.0)
        seconds = round(self.elapsed(stage) + earlier, 2)
        if earlier:
            figures = {"earlier_invocations_s": earlier, **figures}
            self._unfinished_path.write_text(json.dumps(self._unfinished, indent=2) + "\n")
        self.timings[stage] = {"seconds": seconds, **figures}
        shown = ", ".join(f"{k} {v}" for k, v in figures.items() if isinstance(v, (int, float, str)))
        print(f"[{STAGES.index(stage) + 1}/{len(STAGES)}] {stage}: done in {seconds:.1f} s ({shown})", flush=True)
        self.path.write_text(json.dumps(self.timings, indent=2) + "\n")
        if self.publish is not None:
            (self.publish / self.path.name).write_text(self.path.read_text())


def use_threads(count: int | None) -> None:
    """``cpu_threads`` for this process: torch's threads, or torch's default when None."""
    if count is not None:
        torch.set_num_threads(count)
