"""The embedded default: `sportlens serve` alone runs Redis, a worker and the in-process demo model."""
from __future__ import annotations

from pathlib import Path

import httpx
from service_support import ServiceProcess, service_env

from sportlens.service.records_out import ResultOut


def test_serve_alone_answers_with_the_in_process_model(embedded_service, clip):
    ready = embedded_service.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "workers": "ok (1 taking jobs)", "model": "ok"}
    video = embedded_service.post("/v1/videos", files={"file": ("clip.mp4", clip.read_bytes())}).json()
    reply = embedded_service.post("/v1/questions?wait=60", json={
        "video_id": video["id"], "question": "Which team commits the foul?", "options": ["A) red", "B) blue"],
        "max_turns": 2, "alpha": 0.1})
    assert reply.status_code == 200, reply.text
    result = ResultOut.model_validate(reply.json()["result"])  # the API's view: no raw output, no storage path
    assert result.trajectory.answer in {"A", "B"} and result.trajectory.model == "sportlens-demo"
    # The service's calibration, served at the α the request asks for.
    assert result.alpha == 0.1 and result.coverage_target == 0.9 and result.calibration_group == "pooled"
    assert set(result.prediction_set) <= {"A", "B"} and result.set_size == len(result.prediction_set)
    assert set(result.trajectory.option_logprobs) == {"A", "B"}
    assert (embedded_service.home / "redis" / "appendonlydir").is_dir()  # its Redis keeps an AOF under home


def test_selective_answers_and_unreachable_alpha(embedded_service, clip):
    video = embedded_service.post("/v1/videos", files={"file": ("clip.mp4", clip.read_bytes())}).json()
    question = {"video_id": video["id"], "question": "Who fouled?", "options": ["A) red", "B) blue", "C) nobody"],
                "max_turns": 1}
    reply = embedded_service.post("/v1/questions?wait=60", json={**question, "alpha": 0.3, "selective": True})
    assert reply.status_code == 200, reply.text
    result = ResultOut.model_validate(reply.json()["result"])  # the API's view: no raw output, no storage path
    assert result.alpha == 0.3 and result.abstain == (result.set_size != 1)
    too_small = embedded_service.post("/v1/questions", json={**question, "alpha": 0.001})
    assert too_small.status_code == 422 and "too few for α = 0.001" in too_small.text


def test_one_home_runs_one_embedded_serve_and_stopping_it_stops_its_redis(start, tmp_path):
    env = service_env(tmp_path, None, None, in_process_worker="false")
    first = start("serve", env)
    second = ServiceProcess("serve", env, tmp_path / "second.log")
    assert second.process.wait(60) == 1
    second.stop()
    lines = (tmp_path / "second.log").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sportlens: error: the embedded Redis folder"), lines
    assert "is in use (pid " in lines[0] and "SPORTLENS_HOME" in lines[0]
    assert httpx.get(f"{first.url}/healthz").status_code == 200  # the first one is unharmed
    redis_pid = int((tmp_path / "home" / "redis" / "lock").read_text().rsplit(" ", 1)[1])
    first.stop()  # SIGTERM: its Redis goes with it, and the home is free again
    assert not Path(f"/proc/{redis_pid}").exists()
    assert httpx.get(f"{start('serve', env).url}/healthz").status_code == 200
