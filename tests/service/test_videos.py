"""Deleting videos and the retention sweep: a key removes only its own claim; a video a live job needs stays."""
from __future__ import annotations

import time

import httpx
import pytest
from service_support import leftover_files, service_env

from sportlens.tools.testclips import write_index_clip


def stored(data_dir) -> set[str]:
    return {p.name for p in leftover_files(data_dir) if "videos" in p.parts}


def upload(client, clip) -> str:
    reply = client.post("/v1/videos", files={"file": ("clip.mp4", clip.read_bytes())})
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


@pytest.fixture
def own_clip(tmp_path, request):
    """A clip no other test uploads (videos are stored by content, so a shared clip would be shared state)."""
    return write_index_clip(tmp_path / "own.mp4", frames=40 + len(request.node.name) % 20, size=(160, 96))


def test_delete_removes_the_video_its_file_and_its_frames(service, own_clip):
    video_id = upload(service, own_clip)
    assert video_id in stored(service.data_dir)
    job = service.post("/v1/questions?wait=20", json={"video_id": video_id, "question": "Seen?"}).json()
    frame = f"/v1/jobs/{job['id']}/frames/{job['result']['trajectory']['initial_frames'][0]['index']}.jpg"
    assert service.get(frame).status_code == 200  # decoded, and now cached in Redis
    reply = service.delete(f"/v1/videos/{video_id}")
    assert reply.status_code == 204 and reply.content == b""
    assert video_id not in stored(service.data_dir)
    assert service.get(f"/v1/videos/{video_id}").status_code == 404
    gone = service.get(frame)
    assert gone.status_code == 404 and "deleted" in gone.json()["detail"]
    again = service.delete(f"/v1/videos/{video_id}")
    assert again.status_code == 404 and "no video" in again.json()["detail"]
    asked = service.post("/v1/questions", json={"video_id": video_id, "question": "x"})
    assert asked.status_code == 404
    assert upload(service, own_clip) == video_id  # the same bytes may come back


def test_a_video_a_live_job_needs_is_409_until_the_job_ends(service, own_clip, fake_model):
    video_id = upload(service, own_clip)
    fake_model.delay_s = 1.0
    job = service.post("/v1/questions", json={"video_id": video_id, "question": "Keep it?", "cache": False}).json()
    refused = service.delete(f"/v1/videos/{video_id}")
    assert refused.status_code == 409 and job["id"] in refused.json()["detail"]
    assert service.get(f"/v1/videos/{video_id}").status_code == 200
    assert service.delete(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    assert service.delete(f"/v1/videos/{video_id}").status_code == 204
    assert video_id not in stored(service.data_dir)


def test_videos_unused_past_their_ttl_are_swept_unless_a_live_job_needs_them(start, tmp_path, own_redis, fake_model,
                                                                              own_clip, clip):
    env = service_env(tmp_path, own_redis.url, fake_model.url, video_ttl_s=2, video_sweep_s=1)
    api = start("serve", env)
    start("worker", env)
    client = httpx.Client(base_url=api.url, timeout=30)
    idle, busy = upload(client, own_clip), upload(client, clip)
    fake_model.delay_s = 2.0  # two model calls: the job outlives the video's TTL
    job = client.post("/v1/questions", json={"video_id": busy, "question": "Still needed?"}).json()
    deadline = time.monotonic() + 20
    while idle in stored(tmp_path / "data") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert idle not in stored(tmp_path / "data") and client.get(f"/v1/videos/{idle}").status_code == 404
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] in {"queued", "running"}
    assert busy in stored(tmp_path / "data")  # past its TTL, but its job still runs
    while client.get(f"/v1/jobs/{job['id']}").json()["status"] != "complete" and time.monotonic() < deadline:
        time.sleep(0.2)
    while busy in stored(tmp_path / "data") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert busy not in stored(tmp_path / "data")  # swept once its job ended
    client.close()
