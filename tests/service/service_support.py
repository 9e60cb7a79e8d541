"""Helpers the service tests share: the service's processes as an operator starts them, and their environment."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sportlens.tools.ports import free_port

KEY_A, KEY_B, KEY_C = "key-a-0123456789abcdef", "key-b-0123456789abcdef", "key-c-0123456789abcdef"


class ServiceProcess:
    """`sportlens serve` or `sportlens worker` as a child process with its own environment."""

    def __init__(self, command: str, env: dict[str, str], log: Path) -> None:
        self.port = free_port() if command == "serve" else None
        args = [sys.executable, "-m", "sportlens.cli", command]
        if self.port:
            args += ["--port", str(self.port)]
        self.log = log
        self._log_handle = open(log, "ab")
        self.process = subprocess.Popen(args, env=env, stdout=self._log_handle, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}" if self.port else None

    def wait_ready(self, timeout_s: float = 120) -> ServiceProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"service not up after {timeout_s} s:\n{self.log.read_text()[-3000:]}")

    def stop(self, *, kill: bool = False) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log_handle.close()


def service_env(tmp: Path, redis_url: str | None, model_url: str | None, **extra: object) -> dict[str, str]:
    """The environment an operator would set; nothing inherited that names another Redis or model.

    The disk reserve is 64 MB instead of the service's 1 GB default: the suite's uploads are kilobytes, and with the
    default every upload of the suite was refused (507) on a CI host with under 1 GB free. test_hostile checks the
    reserve itself by raising it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPORTLENS_") and k != "REDIS_URL"}
    env["SPORTLENS_HOME"] = str(tmp / "home")
    env["SPORTLENS_DATA_DIR"] = str(tmp / "data")
    env["SPORTLENS_MIN_FREE_DISK_MB"] = "64"
    if redis_url:
        env["REDIS_URL"] = redis_url
    if model_url:
        env["SPORTLENS_BACKEND_URL"], env["SPORTLENS_MODEL_NAME"] = model_url, "fake"
    for name, value in extra.items():
        env[f"SPORTLENS_{name.upper()}"] = str(value)
    return env


def leftover_files(data_dir: Path) -> list[Path]:
    """Files in the upload area and the video store."""
    return [p for p in data_dir.rglob("*") if p.is_file()]
