"""The REST API as a client sees it: one `sportlens serve`, one `sportlens worker`, real Redis, scripted model."""
from __future__ import annotations

import hashlib
import json

import pytest
from service_support import leftover_files

from sportlens.service.records_out import ResultOut


@pytest.fixture(scope="module")
def video_id(service, clip) -> str:
    reply = service.post("/v1/videos", files={"file": ("match.mp4", clip.read_bytes(), "video/mp4")})
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def ask(client, video_id: str, wait: float = 20, **fields):
    body = {"video_id": video_id, "question": "Which team commits the foul?", "options": ["A) red", "B) blue"],
            **fields}
    return client.post(f"/v1/questions?wait={wait}", json=body)


def sse(client, path: str) -> list[tuple[str, dict]]:
    events, kind = [], None
    with client.stream("GET", path) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[len("data: "):])))
    return events


def test_upload_stores_the_video_under_its_sha256_with_probed_info(service, clip, video_id):
    assert video_id == hashlib.sha256(clip.read_bytes()).hexdigest()
    record = service.get(f"/v1/videos/{video_id}").json()
    assert record["info"] == {"frames": 90, "fps": 30.0, "duration_s": 3.0, "width": 320, "height": 180,
                              "codec": "h264"}
    assert record["size_bytes"] == clip.stat().st_size
    again = service.post("/v1/videos", files={"file": ("other-name.bin", clip.read_bytes(), "text/plain")})
    assert again.status_code == 201 and again.json()["id"] == video_id  # content decides, not name or type
    stored = [p for p in leftover_files(service.data_dir) if "uploads" not in p.parts]
    assert [p.name for p in stored] == [video_id]


@pytest.mark.parametrize("name, make, status, words", [
    ("notes.mp4", lambda clip, cut: b"just some text, not a video\n" * 100, 415, "not a video"),
    ("cut.mp4", lambda clip, cut: cut.read_bytes(), 422, "cannot be used"),
    ("empty.mp4", lambda clip, cut: b"", 422, "empty"),
])
def test_bad_uploads_are_refused_and_leave_no_file(service, clip, corrupt_clip, name, make, status, words):
    before = set(leftover_files(service.data_dir))
    reply = service.post("/v1/videos", files={"file": (name, make(clip, corrupt_clip), "video/mp4")})
    assert reply.status_code == status, reply.text
    assert words in reply.json()["detail"]
    assert set(leftover_files(service.data_dir)) == before


def test_upload_without_a_file_part_or_as_json_is_refused(service):
    assert service.post("/v1/videos", data={"other": "x"}, files={"x": ("a", b"1")}).status_code == 422
    reply = service.post("/v1/videos", json={"file": "x"})
    assert reply.status_code == 415 and "multipart/form-data" in reply.json()["detail"]


def test_question_with_wait_answers_with_the_result(service, video_id):
    reply = ask(service, video_id, cache=False)
    assert reply.status_code == 200, reply.text
    job = reply.json()
    assert job["status"] == "complete" and job["attempts"] == 1 and not job["cached"]
    result = ResultOut.model_validate(job["result"])
    trajectory = result.trajectory
    assert trajectory.answer == "A" and trajectory.model == "fake"
    assert [step.action for step in trajectory.steps] == ["choose_frames", "answer"]
    assert job["progress"] == {"turn": 2, "max_turns": 5, "frames_seen": trajectory.frames_used}
    assert reply.headers["location"] == f"/v1/jobs/{job['id']}"
    assert service.get(f"/v1/jobs/{job['id']}").json() == job


def test_a_job_shows_neither_the_storage_path_nor_the_raw_model_output(service, video_id):
    job = ask(service, video_id, cache=False, question="Where is it kept?").json()
    events = sse(service, f"/v1/jobs/{job['id']}/events")
    for shown in (service.get(f"/v1/jobs/{job['id']}").text, json.dumps(job), json.dumps(events)):
        assert str(service.data_dir) not in shown and f"videos/{video_id[:2]}/{video_id}" not in shown
        assert "raw_output" not in shown and "<tool_call>" not in shown  # the tool turn's text is in no other field
    assert job["result"]["trajectory"]["video"] == {"frames": 90, "fps": 30.0, "duration_s": 3.0, "width": 320,
                                                    "height": 180, "codec": "h264", "rotation": 0, "reader": "pyav"}
    steps = job["result"]["trajectory"]["steps"]
    assert [step["action"] for step in steps] == ["choose_frames", "answer"] and steps[-1]["answer"] == "A"
    without_nulls = [{name: value for name, value in step.items() if value is not None} for step in steps]
    assert [data["agent"]["step"] for kind, data in events if kind == "step"] == without_nulls  # events omit nulls


def test_question_without_wait_is_accepted_then_completes(service, video_id):
    reply = ask(service, video_id, wait=0, cache=False, question="Where is the ball?")
    assert reply.status_code == 202 and reply.json()["status"] in {"queued", "running", "complete"}
    events = sse(service, f"/v1/jobs/{reply.json()['id']}/events")
    assert events[-1] == ("status", {"kind": "status", "status": "complete"})


def test_events_stream_one_event_per_agent_step_in_order(service, video_id):
    job = ask(service, video_id, cache=False).json()
    events = sse(service, f"/v1/jobs/{job['id']}/events")
    kinds = [kind for kind, _ in events]
    assert kinds == ["status", "status", "initial_frames", "turn_started", "step", "turn_started", "step", "status"]
    assert [data.get("status") for kind, data in events if kind == "status"] == ["queued", "running", "complete"]
    first_step = events[4][1]["agent"]["step"]
    assert first_step["action"] == "choose_frames" and first_step["frame_range"] == [10, 40]
    assert len(events[2][1]["agent"]["frames"]) == 8
    replay = sse(service.__class__(base_url=service.base_url, headers={"Last-Event-ID": "0-0"}),
                 f"/v1/jobs/{job['id']}/events")
    assert [kind for kind, _ in replay] == kinds


def test_frames_the_agent_saw_are_served_as_jpeg_and_no_others(service, video_id):
    job = ask(service, video_id).json()
    shown = job["result"]["trajectory"]["steps"][0]["frames_shown"][0]["index"]
    image = service.get(f"/v1/jobs/{job['id']}/frames/{shown}.jpg")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content[:3] == b"\xff\xd8\xff"
    unseen = service.get(f"/v1/jobs/{job['id']}/frames/89.jpg")
    assert unseen.status_code == 404 and "not shown" in unseen.json()["detail"]


def test_the_same_question_is_answered_from_the_cache(service, video_id):
    job = ask(service, video_id, question="Is it a penalty?").json()
    sse(service, f"/v1/jobs/{job['id']}/events")  # its events end with the job, which a loaded machine may not end in 20 s
    first = service.get(f"/v1/jobs/{job['id']}").json()
    assert first["status"] == "complete"
    second = ask(service, video_id, wait=0, question="Is it a penalty?")
    assert second.status_code == 200 and second.json()["cached"] and second.json()["status"] == "complete"
    assert second.json()["result"] == first["result"]
    other_settings = ask(service, video_id, wait=0, question="Is it a penalty?", max_turns=3).json()
    assert not other_settings["cached"]


def test_cancel_stops_a_running_job(service, video_id, fake_model):
    fake_model.delay_s = 1.0
    job = ask(service, video_id, wait=0, cache=False, question="Cancel me").json()
    cancelled = service.delete(f"/v1/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = service.delete(f"/v1/jobs/{job['id']}")
    assert again.status_code == 409 and "already finished" in again.json()["detail"]
    assert sse(service, f"/v1/jobs/{job['id']}/events")[-1][1]["status"] == "cancelled"
    assert service.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"


@pytest.mark.parametrize("body, words", [
    ({"question": "x", "alpha": 1.5}, "alpha"),
    ({"question": "x", "alpha": 0}, "alpha"),
    ({"question": "x", "max_turns": 0}, "max_turns"),
    ({"question": "x", "max_turns": 99}, "max_turns"),
    ({"question": "   "}, "blank"),
    ({"question": "x", "options": ["A) only one"]}, "options"),
    ({"question": "x", "frames_per_call": -1}, "frames_per_call"),
    ({"question": "x", "temperature": 2}, "temperature"),
    ({"question": "x", "video_id": "../../etc/passwd"}, "video_id"),
])
def test_out_of_range_questions_are_422_naming_the_field(service, video_id, body, words):
    reply = service.post("/v1/questions", json={"video_id": video_id, **body})
    assert reply.status_code == 422, reply.text
    assert words in json.dumps(reply.json()["detail"])


def test_malformed_json_and_unknown_ids_are_4xx_with_a_json_body(service, video_id):
    malformed = service.post("/v1/questions", content=b'{"video_id": ', headers={"content-type": "application/json"})
    assert malformed.status_code == 422 and "json" in json.dumps(malformed.json()).lower()
    unknown_video = service.post("/v1/questions", json={"video_id": "0" * 64, "question": "x"})
    assert unknown_video.status_code == 404 and "no video" in unknown_video.json()["detail"]
    assert service.get(f"/v1/videos/{'0' * 64}").status_code == 404
    for path in (f"/v1/jobs/{'0' * 32}", f"/v1/jobs/{'0' * 32}/events", f"/v1/jobs/{'0' * 32}/frames/1.jpg"):
        reply = service.get(path)
        assert reply.status_code == 404 and "no job" in reply.json()["detail"], path
    assert service.delete(f"/v1/jobs/{'0' * 32}").status_code == 404
    assert service.get("/v1/jobs/not-an-id").status_code == 422
    assert service.get("/v1/videos/xyz").status_code == 422


def test_health_readiness_and_metrics(service, video_id):
    assert service.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = service.get("/readyz").json()
    assert ready["status"] == "ok" and ready["checks"]["redis"] == "ok" and ready["checks"]["model"] == "ok"
    text = service.get("/metrics").text
    for name in ('sportlens_http_requests_total{method="POST",route="/v1/questions",status="200"}',
                 'sportlens_jobs_total{state="complete"}', "sportlens_queue_depth", "sportlens_frames_decoded_total",
                 'sportlens_model_tokens_total{direction="in"}', "sportlens_http_request_seconds_bucket"):
        assert name in text, name


def test_openapi_document_describes_every_route(service):
    document = service.get("/openapi.json").json()
    assert set(document["paths"]) >= {"/v1/videos", "/v1/videos/{video_id}", "/v1/questions", "/v1/jobs/{job_id}",
                                      "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/frames/{index}.jpg",
                                      "/healthz", "/readyz", "/metrics"}
    question = document["components"]["schemas"]["QuestionRequest"]
    assert '"exclusiveMaximum": 1' in json.dumps(question["properties"]["alpha"])
    assert question["additionalProperties"] is False
    assert "multipart/form-data" in document["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
