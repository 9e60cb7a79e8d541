"""What must survive: a worker killed mid-job, a Redis restart, a model backend that is down."""
from __future__ import annotations

import json
import threading
import time

import httpx
from service_support import service_env


def upload(api_url: str, clip) -> str:
    reply = httpx.post(f"{api_url}/v1/videos", files={"file": ("clip.mp4", clip.read_bytes())}, timeout=30)
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def ask(api_url: str, video_id: str, question: str, wait: float = 0) -> dict:
    reply = httpx.post(f"{api_url}/v1/questions?wait={wait}", timeout=60,
                       json={"video_id": video_id, "question": question, "options": ["A) red", "B) blue"]})
    assert reply.status_code in (200, 202), reply.text
    return reply.json()


def wait_for(api_url: str, job_id: str, predicate, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = httpx.get(f"{api_url}/v1/jobs/{job_id}", timeout=10).json()
        if predicate(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def events(api_url: str, job_id: str) -> list[dict]:
    """The job's server-sent events, read until the stream ends."""
    found = []
    with httpx.stream("GET", f"{api_url}/v1/jobs/{job_id}/events", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                found.append(json.loads(line[len("data: "):]))
    return found


def test_a_job_whose_worker_is_killed_completes_on_another(start, tmp_path, own_redis, fake_model, clip):
    fake_model.delay_s = 0.8
    env = service_env(tmp_path, own_redis.url, fake_model.url, job_deadline_s=4)
    api = start("serve", env)
    first = start("worker", env)
    job = ask(api.url, upload(api.url, clip), "Who fouls?")
    live: list[dict] = []
    follower = threading.Thread(target=lambda: live.extend(events(api.url, job["id"])))
    follower.start()
    running = wait_for(api.url, job["id"], lambda j: j["progress"]["turn"] >= 1, 20)
    assert running["status"] == "running" and running["attempts"] == 1
    first.stop(kill=True)  # SIGKILL: no chance to hand the job back
    start("worker", env)
    done = wait_for(api.url, job["id"], lambda j: j["status"] == "complete", 40)
    assert done["status"] == "complete", done
    assert done["attempts"] == 2 and done["result"]["trajectory"]["answer"] == "A"
    follower.join(30)
    # Read from the start, the stream tells the retry alone, each of its steps once.
    replay = events(api.url, job["id"])
    assert [(e["kind"], e.get("status")) for e in replay] == [
        ("status", "queued"), ("status", "running"), ("initial_frames", None), ("turn_started", None),
        ("step", None), ("turn_started", None), ("step", None), ("status", "complete")]
    assert replay[1]["attempt"] == 2 and replay[1]["error"] == "try 1 ended with its worker"
    assert all(e["attempt"] == 2 for e in replay[2:-1])
    # A client that watched live saw the first try's steps, then the retry's `running` event (attempt 2: start
    # over), then the retry's steps, each once.
    retry = next(n for n, e in enumerate(live) if e.get("status") == "running" and e["attempt"] == 2)
    assert {e["attempt"] for e in live[:retry] if e["kind"] != "status"} == {1}
    assert live[retry:] == replay[1:]


def test_queued_jobs_survive_a_redis_restart(start, tmp_path, own_redis, fake_model, clip):
    env = service_env(tmp_path, own_redis.url, fake_model.url)
    api = start("serve", env)
    video_id = upload(api.url, clip)
    queued = [ask(api.url, video_id, f"Question {n}?")["id"] for n in range(3)]
    own_redis.stop()
    down = httpx.get(f"{api.url}/v1/jobs/{queued[0]}", timeout=10)
    assert down.status_code == 503 and "Redis" in down.json()["detail"]
    assert httpx.get(f"{api.url}/healthz").status_code == 200
    own_redis.start()  # same port, same folder: the AOF is replayed
    start("worker", env)
    for job_id in queued:
        job = wait_for(api.url, job_id, lambda j: j["status"] == "complete", 30)
        assert job["status"] == "complete" and job["result"]["trajectory"]["answer"] == "A", job


def test_a_model_backend_that_is_down_fails_the_job_after_its_retries(start, tmp_path, own_redis, fake_model, clip):
    fake_model.fail = True
    env = service_env(tmp_path, own_redis.url, fake_model.url, job_max_tries=2, retry_backoff_s=0.2)
    api = start("serve", env)
    start("worker", env)
    job = ask(api.url, upload(api.url, clip), "Who fouls?")
    seen_retrying = False
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        job = httpx.get(f"{api.url}/v1/jobs/{job['id']}").json()
        seen_retrying |= job["status"] == "retrying"
        if job["status"] == "failed":
            break
        time.sleep(0.05)
    assert job["status"] == "failed" and job["attempts"] == 2, job
    replay = events(api.url, job["id"])
    assert [e["kind"] for e in replay].count("initial_frames") == 1  # try 1's events went with its retry
    retry = next(e for e in replay if e.get("status") == "running")
    assert retry["attempt"] == 2 and "try 1 of 2" in retry["error"]
    assert "try 2 of 2" in job["error"] and "HTTP 503" in job["error"] and "down for maintenance" in job["error"]
    assert seen_retrying
    assert httpx.get(f"{api.url}/healthz").status_code == 200
    ready = httpx.get(f"{api.url}/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["model"] == "answered HTTP 503"
