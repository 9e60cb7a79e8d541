"""The embedded default: `sportlens serve` alone runs Redis, a worker and the in-process demo model."""
from __future__ import annotations

from sportlens.agent.records import Result


def test_serve_alone_answers_with_the_in_process_model(embedded_service, clip):
    ready = embedded_service.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok", "model": "ok"}
    video = embedded_service.post("/v1/videos", files={"file": ("clip.mp4", clip.read_bytes())}).json()
    reply = embedded_service.post("/v1/questions?wait=60", json={
        "video_id": video["id"], "question": "Which team commits the foul?", "options": ["A) red", "B) blue"],
        "max_turns": 2, "alpha": 0.1})
    assert reply.status_code == 200, reply.text
    result = Result.model_validate(reply.json()["result"])
    assert result.trajectory.answer in {"A", "B"} and result.trajectory.model == "sportlens-demo"
    assert result.alpha == 0.1 and result.prediction_set is None  # no calibration artifact for the demo model
    assert (embedded_service.home / "redis" / "appendonlydir").is_dir()  # its Redis keeps an AOF under home
