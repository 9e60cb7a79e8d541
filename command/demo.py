"""`make demo`: the embedded default model answers an event question about a SportSim visual clip, beside the truth.

    python -m sportlens.demo FOLDER      # FOLDER holds a set from `sportlens synth --preset visual`

It asks the first test question about an incident that none of the 8 initial frames shows, so the trace shows the
model scan the initial frames, call ``choose_frames`` on the interval where the new mark appears, and answer, with
the conformal prediction set of the shipped calibration; then it prints the true answer and the incident's frames.
"""
from __future__ import annotations

import sys
from pathlib import Path

from sportlens.agent.records import QAItem
from sportlens.cli import main as sportlens_main
from sportlens.tools.frames import uniform_indices
from sportlens.tools.video import Video


def pick_question(qa: Path) -> QAItem:
    """The first test question about an incident the 8 initial frames miss (any test question if none does)."""
    items = [QAItem.model_validate_json(line) for line in qa.read_text().splitlines() if line.strip()]
    tests = [item for item in items if item.split == "test" and item.task in ("who", "what", "where")]
    for item in tests:
        with Video(qa.parent / item.video) as clip:
            initial = uniform_indices(0, clip.info.frames - 1, 8)
        start, end = item.event_window
        if not any(start <= index <= end for index in initial):
            return item
    if not tests:
        raise SystemExit(f"{qa} holds no test questions about an incident; "
                         "write it with `sportlens synth --preset visual`")
    return tests[0]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sportlens.demo FOLDER", file=sys.stderr)
        return 2
    qa = Path(args[0]) / "qa.jsonl"
    item = pick_question(qa)
    print(f"$ sportlens ask {item.video} {item.question!r} --options {';'.join(item.options)!r}", flush=True)
    code = sportlens_main(["ask", str(qa.parent / item.video), item.question, "--options", ";".join(item.options)])
    truth = item.options["ABCD".index(item.answer)]
    print(f"true answer: {truth}  (the incident: frames {item.event_window[0]}–{item.event_window[1]})")
    return code


if __name__ == "__main__":
    sys.exit(main())
