"""A real vLLM server for the session: its own environment (created on first use), the demo checkpoint, loopback.

Without vLLM's environment the tests skip with the reason printed; under CI (the CI variable set) they fail.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from sportlens import vllm_env, vllm_server
from sportlens.tools.ports import free_port

MAX_MODEL_LEN = 12288  # 8 initial frames + 8 per call over 3 turns fit (≈300 tokens a frame); 45 frames do not


@dataclass
class LiveServer:
    """The session's server, which a test may kill and start again (same port, same model name)."""

    model_dir: Path
    port: int
    server: vllm_server.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def model_name(self) -> str:
        return "sportlens-demo"

    def start(self) -> float:
        started = time.monotonic()
        self.server = vllm_server.start(
            self.model_dir, port=self.port, served_model_name=self.model_name, max_model_len=MAX_MODEL_LEN,
            max_images=48, extra_args=["--enable-log-requests"], log=lambda message: None,  # tests read aborts there
        )
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL to the server's whole process group: a crash, not a shutdown."""
        os.killpg(self.server.pid, signal.SIGKILL)
        while vllm_server._alive(self.server.pid):
            time.sleep(0.1)


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def vllm(demo_model_dir: Path, pytestconfig: pytest.Config) -> LiveServer:
    def say(line: str) -> None:  # past pytest's capture, so it shows in every run's output (CI's log too)
        with pytestconfig.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
            pytestconfig.pluginmanager.get_plugin("terminalreporter").write_line(line)

    started = time.monotonic()
    try:
        vllm_env.setup(log=lambda message: say(f"[vllm] {message}"))
    except (vllm_env.VLLMError, OSError) as error:
        reason = f"vLLM's environment cannot be created here: {error}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must run the vLLM tests)")
        say(f"[vllm] SKIPPING the vLLM tests: {reason}")
        pytest.skip(reason)
    live = LiveServer(demo_model_dir, free_port())
    seconds = live.start()
    say(f"[vllm] environment ready after {time.monotonic() - started - seconds:.0f} s; "
        f"server on {live.url} answered after {seconds:.0f} s")
    yield live
    vllm_server.stop(live.port)
