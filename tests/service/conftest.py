"""Real Redis (redis-server on loopback, AOF on), a scripted stand-in for the model server, and the service's
own processes (`sportlens serve`, `sportlens worker`) started the way an operator starts them."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

from sportlens.agent.conformal import calibrate
from sportlens.service.auth import hash_key
from sportlens.service.embedded_redis import EmbeddedRedis
from sportlens.tools.testclips import write_index_clip, write_truncated

sys.path.insert(0, str(Path(__file__).parent))
from builders import make_result, synthetic  # noqa: E402
from fake_model import FakeModelServer  # noqa: E402
from service_support import KEY_A, KEY_B, KEY_C, ServiceProcess, service_env  # noqa: E402


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of the test's own, for tests that restart it or whose keys must not meet other tests' keys."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_model():
    server = FakeModelServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset_fake_model(request):
    yield
    if "fake_model" in request.fixturenames:
        model = request.getfixturevalue("fake_model")
        model.delay_s, model.fail = 0.0, False


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    return write_index_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", frames=90, size=(320, 180))


@pytest.fixture(scope="session")
def corrupt_clip(clip, tmp_path_factory) -> Path:
    return write_truncated(clip, tmp_path_factory.mktemp("clips") / "cut.mp4", keep=0.4)


@pytest.fixture
def start(tmp_path):
    """start(command, env) → a running ServiceProcess, stopped at the end of the test."""
    started: list[ServiceProcess] = []

    def _start(command: str, env: dict[str, str]) -> ServiceProcess:
        process = ServiceProcess(command, env, tmp_path / f"{command}-{len(started)}.log")
        started.append(process)
        return process.wait_ready() if command == "serve" else process

    yield _start
    for process in reversed(started):
        process.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_server, fake_model):
    """One API and one worker sharing the session's Redis, with the scripted model; no auth."""
    tmp = tmp_path_factory.mktemp("service")
    env = service_env(tmp, redis_server.url, fake_model.url, queue_name=f"q-{tmp.name}")
    api = ServiceProcess("serve", env, tmp / "api.log").wait_ready()
    worker = ServiceProcess("worker", env, tmp / "worker.log")
    client = httpx.Client(base_url=api.url, timeout=30)
    client.data_dir = tmp / "data"
    yield client
    client.close()
    worker.stop()
    api.stop()


@pytest.fixture(scope="module")
def keyed_service(tmp_path_factory, redis_server, fake_model):
    """An API and a worker with three API keys, a 40-a-minute rate limit (30 without a valid key) and a 0.5 MiB
    upload limit."""
    tmp = tmp_path_factory.mktemp("keyed")
    env = service_env(tmp, redis_server.url, fake_model.url, queue_name=f"q-{tmp.name}",
                      api_keys=",".join(hash_key(k) for k in (KEY_A, KEY_B, KEY_C)),
                      rate_limit_per_minute=40, failed_auth_per_minute=30, max_upload_mb=0.5)
    api = ServiceProcess("serve", env, tmp / "api.log").wait_ready()
    worker = ServiceProcess("worker", env, tmp / "worker.log")
    client = httpx.Client(base_url=api.url, timeout=30)
    client.data_dir = tmp / "data"
    yield client
    client.close()
    worker.stop()
    api.stop()


@pytest.fixture(scope="module")
def embedded_service(tmp_path_factory, demo_model_dir):
    """`sportlens serve` with nothing configured but the model and a calibration: its own Redis, its own worker,
    the demo model, and an APS calibration made for that model (from synthetic scores: the demo model is random)."""
    tmp = tmp_path_factory.mktemp("embedded")
    probabilities, labels = synthetic(200, seed=0)
    calibration = [make_result(p, l, model="sportlens-demo", index=i) for i, (p, l) in enumerate(zip(probabilities, labels))]
    calibrate(calibration, alpha=0.1, method="aps", by=()).save(tmp / "calib.json")
    env = service_env(tmp, None, None, model_dir=demo_model_dir, calibration=tmp / "calib.json")
    api = ServiceProcess("serve", env, tmp / "api.log").wait_ready()
    deadline = time.monotonic() + 120
    while httpx.get(f"{api.url}/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)  # the worker loads the model in the background
    client = httpx.Client(base_url=api.url, timeout=120)
    client.home = tmp / "home"
    yield client
    client.close()
    api.stop()
