"""Issue 3's GPU check: the in-process transformers backend on CUDA in bf16, with the demo model, against fp32 on the CPU.

    python -m sportlens.benchmarks.gpu.check_cuda_backend --out DIR [--device cuda] [--questions 3]

Needs no download: it builds the demo checkpoint and an index-stamped clip. For each question it runs the whole
agent loop (constrained turns, option scoring) on the device in bf16 and once more on the CPU in fp32, and records
whether both parsed, the answers, the thoughts and the seconds each took. The loop scores options after the turn's
own thought, so once bf16 greedy decoding writes a different thought the two option scores condition on different
text; the numerical gap is therefore measured teacher-forced, on identical input (the question, its 8 initial
frames and fixed continuations) scored by both. Writes ``cuda_backend.json`` under --out and prints one line per
question. run_full.sh runs it first; ``run_full.sh check`` runs it alone.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from sportlens.agent.backends.transformers_local import TransformersBackend
from sportlens.agent.loop import AgentSettings, answer_question, opening_messages
from sportlens.tools.testclips import write_index_clip
from sportlens.tools.video import Video
from sportlens.training.demo_model import build_demo_model

QUESTION, OPTIONS = "Which team commits the foul?", ["A) red", "B) blue", "C) nobody"]
SETTINGS = AgentSettings(max_turns=3, constrain=True, score_options=True, max_tokens_per_turn=256)
CONTINUATIONS = ["<answer>A</answer>", "<think>red fouls</think>\n<answer>A</answer>",
                 '<think>look closer</think>\n<tool_call>{"name": "choose_frames", "arguments": '
                 '{"frame_range": [10, 40]}}</tool_call>']


def ask(backend: TransformersBackend, clip: Path) -> dict:
    started = time.perf_counter()
    with Video(clip) as video:
        trajectory = answer_question(video, QUESTION, backend, options=OPTIONS, settings=SETTINGS)
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "answer": trajectory.answer,
        "format_errors": trajectory.format_errors,
        "turns": len(trajectory.steps),
        "thoughts": [step.thought for step in trajectory.steps],
        "option_logprobs": trajectory.option_logprobs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--questions", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sportlens-cuda-check-") as tmp:
        tmp = Path(tmp)
        model_dir = build_demo_model(tmp / "demo")
        clips = [write_index_clip(tmp / f"clip{i}.mp4", frames=240 + 60 * i, size=(640, 360))
                 for i in range(args.questions)]
        device = TransformersBackend(model_dir, device=args.device, dtype=args.dtype)
        reference = TransformersBackend(model_dir, device="cpu", dtype="float32")
        ask(device, clips[0])  # warm-up: kernels, allocator
        rows = []
        for clip in clips:
            on_device, on_cpu = ask(device, clip), ask(reference, clip)
            with Video(clip) as video:  # one input, built once, that both backends score
                _, messages = opening_messages(video, QUESTION, OPTIONS, SETTINGS)
            device_scores = device.score_continuations(messages, CONTINUATIONS)
            cpu_scores = reference.score_continuations(messages, CONTINUATIONS)
            gap = max(abs(a - b) for a, b in zip(device_scores, cpu_scores))
            same_thoughts = on_device["thoughts"] == on_cpu["thoughts"]
            rows.append({"clip": clip.name, "device": on_device, "cpu_fp32": on_cpu, "same_thoughts": same_thoughts,
                         "teacher_forced": {"device": device_scores, "cpu_fp32": cpu_scores}, "max_logprob_gap": gap})
            print(f"{clip.name}: {args.device}/{args.dtype} {on_device['seconds']:.2f} s answer {on_device['answer']}, "
                  f"cpu/fp32 {on_cpu['seconds']:.2f} s answer {on_cpu['answer']}, same thoughts {same_thoughts}, "
                  f"teacher-forced log-prob gap {gap:.4f}")
    summary = {
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device,
        "dtype": args.dtype,
        "torch": torch.__version__,
        "all_parsed": all(r["device"]["answer"] is not None and r["device"]["format_errors"] == 0 for r in rows),
        "same_answers": all(r["device"]["answer"] == r["cpu_fp32"]["answer"] for r in rows),
        "max_logprob_gap": max(r["max_logprob_gap"] for r in rows),
        "questions": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cuda_backend.json").write_text(json.dumps(summary, indent=2))
    print(f"all parsed: {summary['all_parsed']}; same answers: {summary['same_answers']}; "
          f"largest teacher-forced log-prob gap vs fp32 CPU: {summary['max_logprob_gap']}")
    return 0 if summary["all_parsed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
