"""What the REST service costs on top of the agent, and how it holds up under 50 concurrent clients.

1. Overhead: the same question answered by ``answer_question`` called directly and through
   ``POST /v1/questions?wait=`` (HTTP, Redis job record, arq queue, worker, events, result), with a scripted
   model that answers at once so that the difference is the service's own cost. Target: ≤ 10 ms at p50.
2. Load: ``--clients`` concurrent clients for ``--seconds`` against ``sportlens serve`` with the in-process
   demo model, each asking, waiting for the answer, and asking again; uncached (``cache: false``, the model
   is the bottleneck) and cached (the same question: the API is). Reports errors, p50/p95 and throughput.

Loopback only, bounded in time and count. Run: ``.venv/bin/python benchmarks/perf/service_api.py``
(``--seconds 5 --clients 5`` for a quick look).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn

from sportlens.agent.backends.base import ChatMessage, Generation
from sportlens.agent.loop import answer_question
from sportlens.service.app import create_app
from sportlens.tools.ports import free_port
from sportlens.service.embedded_redis import EmbeddedRedis
from sportlens.service.settings import ServiceSettings
from sportlens.tools.testclips import write_index_clip
from sportlens.tools.video import Video

QUESTION = {"question": "Which team commits the foul?", "options": ["A) red", "B) blue"]}


class InstantBackend:
    """A model that answers "A" at once: what remains of a question's latency is video decoding and the service."""

    model_id = "instant"

    def generate(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float = 0.0,
                 constraint: str | None = None, on_text: Callable[[str], None] | None = None) -> Generation:
        return Generation(text="<think>clear</think><answer>A</answer>", tokens_in=100, tokens_out=8)

    def close(self) -> None:
        pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def overhead(clip: Path, redis_url: str, data: Path, rounds: int) -> None:
    """Direct and through-the-API questions alternate, so that drift in the machine's load hits both sides alike."""
    backend = InstantBackend()

    def ask_directly() -> float:
        started = time.perf_counter()
        with Video(clip, threads=1) as video:
            answer_question(video, QUESTION["question"], backend, options=QUESTION["options"])
        return time.perf_counter() - started

    settings = ServiceSettings(redis_url=redis_url, data_dir=data, in_process_worker=True,
                               queue_name="bench:overhead", worker_poll_s=0.005)  # as a worker over HTTP polls
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, backend=backend), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    direct, through_api = [], []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while not server.started:
                time.sleep(0.05)
            video_id = client.post("/v1/videos", files={"file": ("clip.mp4", clip.read_bytes())}).json()["id"]
            for n in range(rounds + 5):
                seconds_direct = ask_directly()
                started = time.perf_counter()
                reply = client.post("/v1/questions?wait=10", json={"video_id": video_id, "cache": False, **QUESTION})
                elapsed = time.perf_counter() - started
                assert reply.status_code == 200 and reply.json()["status"] == "complete", reply.text
                if n >= 5:  # the first few warm up connections and code paths
                    direct.append(seconds_direct)
                    through_api.append(elapsed)
    finally:
        server.should_exit = True
        thread.join(10)
    p50_direct, p50_api = statistics.median(direct) * 1e3, statistics.median(through_api) * 1e3
    print(f"overhead ({rounds} questions, scripted instant model, 90-frame 320×180 clip):")
    print(f"  answer_question directly   p50 {p50_direct:7.1f} ms  p95 {percentile(direct, .95) * 1e3:7.1f} ms")
    print(f"  POST /v1/questions?wait=   p50 {p50_api:7.1f} ms  p95 {percentile(through_api, .95) * 1e3:7.1f} ms")
    verdict = "meets" if p50_api - p50_direct <= 10 else "MISSES"
    print(f"  service overhead at p50: {p50_api - p50_direct:.1f} ms ({verdict} the 10 ms target)")


async def load(base_url: str, video_id: str, clients: int, seconds: float, cached: bool) -> None:
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + seconds

    async def client_loop(number: int, client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            body = {"video_id": video_id, **QUESTION, "cache": cached, "max_turns": 2}
            started = time.perf_counter()
            try:
                reply = await client.post("/v1/questions?wait=60", json=body)
                job = reply.json()
                while reply.status_code == 202:  # not finished within the bound: keep waiting on the events
                    async with client.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
                        async for _ in stream.aiter_lines():
                            pass
                    reply = await client.get(f"/v1/jobs/{job['id']}")
                    job = reply.json()
                if reply.status_code != 200 or job["status"] != "complete":
                    errors.append(f"HTTP {reply.status_code}: {job.get('status')} {job.get('error')}")
                    continue
            except httpx.HTTPError as error:
                errors.append(repr(error))
                continue
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    limits = httpx.Limits(max_connections=clients * 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=180, limits=limits) as client:
        await asyncio.gather(*(client_loop(n, client) for n in range(clients)))
    wall = time.perf_counter() - began
    label = "cached (same question)" if cached else "uncached (cache: false)"
    print(f"load, {label}: {clients} clients for {seconds:g} s (+ draining {wall - seconds:.1f} s)")
    if latencies:
        print(f"  {len(latencies)} answered, {len(errors)} errors, {len(latencies) / wall:.2f} questions/s, "
              f"latency p50 {statistics.median(latencies) * 1e3:.0f} ms, p95 {percentile(latencies, .95) * 1e3:.0f} ms")
    else:
        print(f"  nothing answered, {len(errors)} errors")
    for error in errors[:5]:
        print(f"  error: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="questions for the overhead measurement")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--model-dir", type=Path, help="checkpoint for the load test (default: the demo model)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sportlens-bench-") as tmp:
        tmp = Path(tmp)
        clip = write_index_clip(tmp / "clip.mp4", frames=90, size=(320, 180))
        redis = EmbeddedRedis(tmp / "redis").start()
        try:
            overhead(clip, redis.url, tmp / "data", args.rounds)
            env = {k: v for k, v in os.environ.items() if not k.startswith("SPORTLENS_")}
            env.update(REDIS_URL=redis.url, SPORTLENS_IN_PROCESS_WORKER="true", SPORTLENS_DATA_DIR=str(tmp / "data"),
                       SPORTLENS_QUEUE_NAME="bench:load")
            if args.model_dir:
                env["SPORTLENS_MODEL_DIR"] = str(args.model_dir)
            port = free_port()
            with open(tmp / "serve.log", "wb") as log:
                serve = subprocess.Popen([sys.executable, "-m", "sportlens.cli", "serve", "--port", str(port)],
                                         env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                base_url = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    try:
                        if httpx.get(f"{base_url}/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.2)
                else:
                    raise SystemExit(f"sportlens serve did not get ready:\n{(tmp / 'serve.log').read_text()[-2000:]}")
                video_id = httpx.post(f"{base_url}/v1/videos", files={"file": ("clip.mp4", clip.read_bytes())},
                                      timeout=30).json()["id"]
                asyncio.run(load(base_url, video_id, args.clients, args.seconds, cached=False))
                asyncio.run(load(base_url, video_id, args.clients, min(args.seconds, 20), cached=True))
            finally:
                serve.terminate()
                serve.wait(30)
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
