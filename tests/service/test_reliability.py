"""What must survive, and heal without a person: a worker killed mid-job, Redis killed (embedded or shared),
`serve` killed, a stale lock, uploads a crash cut short, a model backend that is down.

Every fault is real: processes are killed by pid with SIGKILL, Redis is a real redis-server, clients speak HTTP.
Each job must complete exactly once (one `complete` event in its stream), within the bound the issue sets
(30 s after the fault), a generous bound on two shared cores: the worker lease is 10 s.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from service_support import service_env

from sportlens.tools.ports import free_port

RECOVERY_BOUND_S = 30


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
        try:
            job = httpx.get(f"{api_url}/v1/jobs/{job_id}", timeout=10).json()
        except httpx.HTTPError:  # the API is restarting
            job = {}
        if (job and predicate(job)) or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def readyz(api_url: str, timeout_s: float, status_code: int = 200) -> dict:
    """/readyz once it answers ``status_code``, or its last answer after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = httpx.get(f"{api_url}/readyz", timeout=10)
        if reply.status_code == status_code or time.monotonic() > deadline:
            return reply.json()
        time.sleep(0.1)


def events(api_url: str, job_id: str) -> list[dict]:
    """The job's server-sent events, read until the stream ends."""
    found = []
    with httpx.stream("GET", f"{api_url}/v1/jobs/{job_id}/events", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                found.append(json.loads(line[len("data: "):]))
    return found


def completed_once(api_url: str, job_id: str) -> dict:
    """The finished job, after checking that its stream tells one ending, `complete`, with the scripted answer."""
    job = httpx.get(f"{api_url}/v1/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "complete" and job["result"]["trajectory"]["answer"] == "A", job
    endings = [e["status"] for e in events(api_url, job_id) if e["kind"] == "status"
               and e["status"] in ("complete", "failed", "cancelled")]
    assert endings == ["complete"]
    return job


def redis_pid(home: Path) -> int | None:
    """The embedded redis-server's pid, as its lock names it; None while the lock is being rewritten."""
    holders = (home / "redis" / "lock").read_text()
    return int(holders.rsplit(" ", 1)[1]) if "redis-server pid" in holders else None


def gone(pid: int) -> bool:
    """Whether the process ended (a zombie that nobody reaped yet has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_job_whose_worker_is_killed_completes_on_another_within_its_lease(start, tmp_path, own_redis, fake_model,
                                                                             clip, record_property):
    fake_model.delay_s = 0.8
    env = service_env(tmp_path, own_redis.url, fake_model.url)  # the default deadline: 600 s; the lease: 10 s
    api = start("serve", env)
    first = start("worker", env)
    job = ask(api.url, upload(api.url, clip), "Who fouls?")
    live: list[dict] = []
    follower = threading.Thread(target=lambda: live.extend(events(api.url, job["id"])))
    follower.start()
    running = wait_for(api.url, job["id"], lambda j: j["progress"]["turn"] >= 1, 20)
    assert running["status"] == "running" and running["attempts"] == 1
    os.kill(first.process.pid, signal.SIGKILL)  # no chance to hand the job back
    killed = time.monotonic()
    start("worker", env)
    done = wait_for(api.url, job["id"], lambda j: j["status"] == "complete", RECOVERY_BOUND_S)
    record_property("recovery_s", round(time.monotonic() - killed, 1))
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


def test_readyz_follows_the_workers_and_a_worker_outlives_a_redis_outage(start, tmp_path, own_redis, fake_model,
                                                                          clip, record_property):
    env = service_env(tmp_path, own_redis.url, fake_model.url)
    api = start("serve", env)
    video_id = upload(api.url, clip)
    idle = httpx.get(f"{api.url}/readyz")
    assert idle.status_code == 503 and idle.json()["checks"]["workers"] == "no worker has taken jobs for 10 s"
    worker = start("worker", env)
    assert readyz(api.url, 30)["checks"]["workers"] == "ok (1 taking jobs)"
    os.kill(worker.process.pid, signal.SIGKILL)
    assert readyz(api.url, 20, 503)["checks"]["workers"] == "no worker has taken jobs for 10 s"
    start("worker", env)
    assert readyz(api.url, 30)["status"] == "ok"

    own_redis.stop(kill=True)  # the shared Redis dies, and an operator brings it back on the same data
    down = httpx.get(f"{api.url}/readyz")
    assert down.status_code == 503 and down.json()["checks"]["redis"].startswith("unreachable")
    time.sleep(3)  # long enough for the worker to have failed a few polls and backed off
    own_redis.start()
    returned = time.monotonic()
    assert readyz(api.url, RECOVERY_BOUND_S)["checks"]["workers"] == "ok (1 taking jobs)"
    job = ask(api.url, video_id, "Who fouls after the outage?")
    assert wait_for(api.url, job["id"], lambda j: j["status"] == "complete", RECOVERY_BOUND_S)["status"] == "complete"
    record_property("recovery_s", round(time.monotonic() - returned, 1))
    completed_once(api.url, job["id"])


def test_a_killed_embedded_redis_is_restarted_and_its_interrupted_job_retried(start, tmp_path, fake_model, clip,
                                                                              record_property):
    fake_model.delay_s = 1.0
    env = service_env(tmp_path, None, fake_model.url)  # embedded: its own Redis and in-process worker
    api = start("serve", env)
    assert readyz(api.url, 60)["status"] == "ok"
    interrupted = ask(api.url, upload(api.url, clip), "Who fouls?")
    running = wait_for(api.url, interrupted["id"], lambda j: j["progress"]["turn"] >= 1, 20)
    assert running["status"] == "running"
    time.sleep(1.1)  # the AOF is synced every second: what a SIGKILL may lose is the last second
    killed_pid = redis_pid(tmp_path / "home")
    os.kill(killed_pid, signal.SIGKILL)
    killed = time.monotonic()
    # Restarted on the same port and data.
    assert until(lambda: redis_pid(tmp_path / "home") not in (killed_pid, None), 10)
    ready = readyz(api.url, RECOVERY_BOUND_S)
    assert ready["status"] == "ok", ready
    record_property("ready_again_s", round(time.monotonic() - killed, 1))
    fresh = ask(api.url, interrupted["video_id"], "Who fouls, asked after the restart?")
    for job_id in (interrupted["id"], fresh["id"]):
        job = wait_for(api.url, job_id, lambda j: j["status"] == "complete", RECOVERY_BOUND_S)
        assert job["status"] == "complete", job
    record_property("interrupted_done_s", round(time.monotonic() - killed, 1))
    assert completed_once(api.url, interrupted["id"])["attempts"] >= 2
    completed_once(api.url, fresh["id"])


def test_a_killed_serve_takes_its_redis_along_and_the_next_serve_retries_its_job(start, tmp_path, fake_model, clip,
                                                                                 record_property):
    fake_model.delay_s = 1.0
    env = service_env(tmp_path, None, fake_model.url)
    first = start("serve", env)
    job = ask(first.url, upload(first.url, clip), "Who fouls?")
    assert wait_for(first.url, job["id"], lambda j: j["progress"]["turn"] >= 1, 30)["status"] == "running"
    orphan = redis_pid(tmp_path / "home")
    os.kill(first.process.pid, signal.SIGKILL)
    killed = time.monotonic()
    assert until(lambda: gone(orphan), 10)  # its redis-server followed it
    second = start("serve", env)  # the lock is free: no "in use" refusal naming a dead pid
    done = wait_for(second.url, job["id"], lambda j: j["status"] == "complete", RECOVERY_BOUND_S)
    record_property("recovery_s", round(time.monotonic() - killed, 1))
    assert done["status"] == "complete", done
    assert completed_once(second.url, job["id"])["attempts"] == 2


def test_a_stale_lock_whose_serve_is_dead_is_taken_over(start, tmp_path):
    folder = tmp_path / "home" / "redis"
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # What a `serve` killed before its redis-server could follow it leaves: the lock, held by that redis-server.
    lock = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    left = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(free_port()), "--dir", str(folder),
                             "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL, pass_fds=(lock,))
    os.write(lock, f"pid {dead.pid}, redis-server pid {left.pid}".encode())
    os.close(lock)
    try:
        api = start("serve", service_env(tmp_path, None, None, in_process_worker="false"))
        assert left.wait(10) == 0  # stopped with SIGTERM: a clean exit, its AOF synced
        holders = (folder / "lock").read_text()
        assert holders == f"pid {api.process.pid}, redis-server pid {redis_pid(tmp_path / 'home')}"
        assert "taking over" in api.log.read_text() and f"pid {dead.pid}" in api.log.read_text()
    finally:
        if left.poll() is None:
            left.kill()
            left.wait()


def test_uploads_a_crash_cut_short_are_swept_after_their_grace_period(start, tmp_path, own_redis, fake_model):
    env = service_env(tmp_path, own_redis.url, fake_model.url)
    uploads = tmp_path / "data" / "uploads"
    uploads.mkdir(parents=True)
    crashed, in_progress = uploads / "crashed.part", uploads / "in-progress.part"
    crashed.write_bytes(b"half a video")
    in_progress.write_bytes(b"still arriving")
    two_hours_ago = time.time() - 7200
    os.utime(crashed, (two_hours_ago, two_hours_ago))
    start("worker", env)  # workers sweep at start-up, then every 10 minutes
    assert until(lambda: not crashed.exists(), 30)
    assert in_progress.exists()


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
