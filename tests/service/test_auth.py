"""API keys: every /v1 route needs one when keys are configured; a key sees only its own videos and jobs."""
from __future__ import annotations

import os

import pytest
from service_support import KEY_A, KEY_B, KEY_C, leftover_files

from sportlens.tools.testclips import write_index_clip


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def owned(keyed_service, clip):
    """Key A's video and finished job."""
    video = keyed_service.post("/v1/videos", headers=auth(KEY_A), files={"file": ("a.mp4", clip.read_bytes())})
    assert video.status_code == 201, video.text
    job = keyed_service.post("/v1/questions?wait=20", headers=auth(KEY_A),
                             json={"video_id": video.json()["id"], "question": "Who scored?"})
    assert job.status_code == 200, job.text
    return video.json()["id"], job.json()


@pytest.mark.parametrize("headers, words", [
    ({}, "needs an API key"),
    (auth("wrong-key"), "not valid"),
    ({"Authorization": "Basic a2V5OnNlY3JldA=="}, "needs an API key"),
])
def test_missing_or_wrong_keys_are_401_on_every_v1_route(keyed_service, owned, headers, words):
    video_id, job = owned
    for method, path in [("POST", "/v1/videos"), ("GET", f"/v1/videos/{video_id}"), ("POST", "/v1/questions"),
                         ("GET", f"/v1/jobs/{job['id']}"), ("GET", f"/v1/jobs/{job['id']}/events"),
                         ("DELETE", f"/v1/jobs/{job['id']}"), ("GET", f"/v1/jobs/{job['id']}/frames/1.jpg"),
                         ("DELETE", f"/v1/videos/{video_id}")]:
        reply = keyed_service.request(method, path, headers=headers)
        assert reply.status_code == 401, (method, path, reply.text)
        assert words in reply.json()["detail"] and reply.headers["www-authenticate"] == "Bearer"
    assert keyed_service.get("/healthz").status_code == 200  # probes need no key


def test_a_key_sees_only_its_own_videos_and_jobs(keyed_service, owned, clip):
    video_id, job = owned
    assert keyed_service.get(f"/v1/jobs/{job['id']}", headers=auth(KEY_A)).json()["status"] == "complete"
    for method, path in [("GET", f"/v1/videos/{video_id}"), ("GET", f"/v1/jobs/{job['id']}"),
                         ("GET", f"/v1/jobs/{job['id']}/events"), ("DELETE", f"/v1/jobs/{job['id']}"),
                         ("GET", f"/v1/jobs/{job['id']}/frames/{job['result']['trajectory']['initial_frames'][0]['index']}.jpg")]:
        reply = keyed_service.request(method, path, headers=auth(KEY_B))
        assert reply.status_code == 404, (method, path, reply.text)
    asked = keyed_service.post("/v1/questions", headers=auth(KEY_B), json={"video_id": video_id, "question": "x"})
    assert asked.status_code == 404 and "no video" in asked.json()["detail"]
    # uploading the same bytes makes the video B's too, under the same id
    mine = keyed_service.post("/v1/videos", headers=auth(KEY_B), files={"file": ("b.mp4", clip.read_bytes())})
    assert mine.json()["id"] == video_id
    assert keyed_service.get(f"/v1/videos/{video_id}", headers=auth(KEY_B)).status_code == 200
    assert keyed_service.get(f"/v1/jobs/{job['id']}", headers=auth(KEY_B)).status_code == 404


def test_deleting_a_video_removes_only_this_keys_claim(keyed_service, tmp_path):
    clip = write_index_clip(tmp_path / "shared.mp4", frames=50, size=(160, 96))
    uploaded = keyed_service.post("/v1/videos", headers=auth(KEY_A), files={"file": ("a.mp4", clip.read_bytes())})
    video_id = uploaded.json()["id"]
    assert keyed_service.delete(f"/v1/videos/{video_id}", headers=auth(KEY_B)).status_code == 404  # not B's
    keyed_service.post("/v1/videos", headers=auth(KEY_B), files={"file": ("b.mp4", clip.read_bytes())})
    assert keyed_service.delete(f"/v1/videos/{video_id}", headers=auth(KEY_A)).status_code == 204
    assert keyed_service.get(f"/v1/videos/{video_id}", headers=auth(KEY_A)).status_code == 404
    assert keyed_service.get(f"/v1/videos/{video_id}", headers=auth(KEY_B)).status_code == 200  # B keeps it
    assert video_id in {p.name for p in leftover_files(keyed_service.data_dir)}
    assert keyed_service.delete(f"/v1/videos/{video_id}", headers=auth(KEY_B)).status_code == 204
    assert video_id not in {p.name for p in leftover_files(keyed_service.data_dir)}


def test_oversized_uploads_are_413_and_leave_no_file(keyed_service):
    before = set(leftover_files(keyed_service.data_dir))
    big = os.urandom(700 * 1024)
    declared = keyed_service.post("/v1/videos", headers=auth(KEY_A), files={"file": ("big.mp4", big)})
    assert declared.status_code == 413 and "0.5 MiB limit" in declared.json()["detail"]

    def chunks():  # no Content-Length: the limit must hold while the body streams
        boundary = b"--b0undary"
        yield boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'
        for start in range(0, len(big), 64 * 1024):
            yield big[start:start + 64 * 1024]
        yield b"\r\n" + boundary + b"--\r\n"

    streamed = keyed_service.post("/v1/videos", content=chunks(),
                                  headers={**auth(KEY_A), "content-type": "multipart/form-data; boundary=b0undary"})
    assert streamed.status_code == 413 and "limit" in streamed.json()["detail"]
    assert set(leftover_files(keyed_service.data_dir)) == before


def test_each_key_is_rate_limited_in_redis(keyed_service):
    statuses = [keyed_service.get("/v1/videos/" + "0" * 64, headers=auth(KEY_C)).status_code for _ in range(90)]
    assert 429 in statuses and set(statuses) == {404, 429}
    limited = keyed_service.get("/v1/videos/" + "0" * 64, headers=auth(KEY_C))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert "rate limit of 40" in limited.json()["detail"]
    assert keyed_service.get(f"/v1/videos/{'0' * 64}", headers=auth(KEY_A)).status_code == 404  # other keys unaffected
