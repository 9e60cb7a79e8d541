"""Hostile clients against `sportlens serve` on loopback: the service does no work for a caller before it knows who it
is, bounds what any caller may hold, and tells nothing to the wrong one. Each test replays a probe of issue 18."""
from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from contextlib import ExitStack

import httpx
import pytest
from redis.asyncio import Redis
from service_support import KEY_A, KEY_B, KEY_C, ServiceProcess, service_env

from sportlens.service.auth import hash_key
from sportlens.service.limits import RateLimited, RateLimiter
from sportlens.tools.testclips import write_index_clip


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory, clip):
    """Three different clips of about the same size."""
    folder = tmp_path_factory.mktemp("hostile-clips")
    return [clip] + [write_index_clip(folder / f"{n}.mp4", frames=n, size=(320, 180)) for n in (89, 88)]


KEYS = ",".join(hash_key(k) for k in (KEY_A, KEY_B, KEY_C))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, redis_server, fake_model):
    """Keys A, B, C with tight limits: 1 s for headers and between body pieces, 10 failed-key requests a minute,
    2 streams, 1 wait and 2 live jobs per key."""
    tmp = tmp_path_factory.mktemp("hostile")
    env = service_env(tmp, redis_server.url, fake_model.url, queue_name=f"q-{tmp.name}", api_keys=KEYS,
                      rate_limit_per_minute=10**4, failed_auth_per_minute=10, header_timeout_s=1, body_timeout_s=1,
                      max_streams_per_key=2, max_waits_per_key=1, max_live_jobs_per_key=2)
    api = ServiceProcess("serve", env, tmp / "api.log").wait_ready()
    worker = ServiceProcess("worker", env, tmp / "worker.log")
    client = httpx.Client(base_url=api.url, timeout=30)
    client.port = api.port
    yield client
    client.close()
    worker.stop()
    api.stop()


def raw_request(port: int, head: bytes, body: bytes = b"") -> bytes:
    """Sends ``head`` and ``body`` on a fresh connection and returns what the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def upload(client, key: str, clip) -> httpx.Response:
    return client.post("/v1/videos", headers=auth(key), files={"file": ("clip.mp4", clip.read_bytes())})


def test_an_oversized_body_without_a_key_is_refused_before_it_is_read(hostile):
    # 150 MiB announced, 4 KiB sent: the answer comes at once, so nothing waited for (or read) the rest.
    head = (b"POST /v1/questions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (150 * 2**20))
    answer = raw_request(hostile.port, head, b"[" * 4096)
    assert answer.startswith(b"HTTP/1.1 401 ") and b"needs an API key" in answer
    bad_json = hostile.post("/v1/questions", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 401  # no key: who asks comes before what is asked


def test_bodies_are_limited_while_they_stream_and_must_keep_arriving(hostile):
    def endless():  # no Content-Length: only counting the bytes can stop it
        for _ in range(64):
            yield b" " * 2**14

    streamed = hostile.post("/v1/questions", content=endless(),
                            headers={**auth(KEY_A), "content-type": "application/json"})
    assert streamed.status_code == 413 and "64 KiB limit" in streamed.json()["detail"]
    head = (b"POST /v1/questions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" % KEY_A.encode())
    stalled = raw_request(hostile.port, head, b'{"video_id": ')  # then silence
    assert stalled.startswith(b"HTTP/1.1 408 ") and b"stopped arriving" in stalled


def test_a_422_quotes_no_more_than_a_few_hundred_characters_of_the_input(hostile):
    reply = hostile.post("/v1/questions", headers=auth(KEY_A), json={"video_id": "x" * 60_000, "question": 7})
    assert reply.status_code == 422
    assert len(reply.content) < 2000 and "not all quoted" in reply.text


def test_callers_without_a_valid_key_are_throttled_and_keys_are_not(hostile):
    statuses = [hostile.get(f"/v1/videos/{'0' * 64}", headers=auth("guess-" + str(n))).status_code for n in range(15)]
    first_refusal = statuses.index(429)  # earlier tests' requests without a key count too
    assert 0 < first_refusal <= 10 and set(statuses[:first_refusal]) == {401} and set(statuses[first_refusal:]) == {429}
    refused = hostile.get(f"/v1/videos/{'0' * 64}")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert hostile.get(f"/v1/videos/{'0' * 64}", headers=auth(KEY_A)).status_code == 404


def test_the_rate_limit_is_a_sliding_window_with_no_double_burst_at_a_minute_edge(redis_server):
    async def probe() -> list[bool]:
        redis = Redis.from_url(redis_server.url)
        limiter, let_through = RateLimiter(redis, "probe"), []
        for now in [59.9] * 5 + [60.1] * 5 + [119.8, 119.95]:  # a fixed window would let 10 through around 60 s
            try:
                await limiter.hit("sliding-probe", 5, now=1_000_000_000 + now)
                let_through.append(True)
            except RateLimited:
                let_through.append(False)
        await redis.aclose()
        return let_through

    assert asyncio.run(probe()) == [True] * 5 + [False] * 5 + [False, True]


def test_slow_headers_do_not_hold_connections(hostile):
    loris = [socket.create_connection(("127.0.0.1", hostile.port), timeout=10) for _ in range(200)]
    for connection in loris:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    assert hostile.get("/healthz").status_code == 200  # others are served meanwhile
    deadline = time.monotonic() + 20  # the limit is 1 s; closed long before uvicorn's or any idle timeout
    closed = 0
    for connection in loris:
        connection.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            closed += connection.recv(1) == b""
        except (ConnectionResetError, TimeoutError):
            closed += 0
        connection.close()
    assert closed == 200


@pytest.fixture
def running_job(hostile, clips, fake_model):
    """Key A's job that runs for a while (the model takes 5 s a turn); cancelled afterwards."""
    video_id = upload(hostile, KEY_A, clips[0]).json()["id"]
    fake_model.delay_s = 5
    job = hostile.post("/v1/questions", headers=auth(KEY_A), json={"video_id": video_id, "question": "Slow?",
                                                                      "cache": False}).json()
    yield job
    hostile.delete(f"/v1/jobs/{job['id']}", headers=auth(KEY_A))


def test_a_key_holds_a_bounded_number_of_streams_and_jobs(hostile, running_job):
    path = f"/v1/jobs/{running_job['id']}/events"
    with hostile.stream("GET", path, headers=auth(KEY_A)) as first, \
            hostile.stream("GET", path, headers=auth(KEY_A)) as second:
        assert first.status_code == second.status_code == 200
        third = hostile.get(path, headers=auth(KEY_A))
        assert third.status_code == 429 and "2 open event streams" in third.json()["detail"]
    body = {"video_id": running_job["video_id"], "question": "Another?", "cache": False}
    another = hostile.post("/v1/questions", headers=auth(KEY_A), json=body)
    assert another.status_code == 202
    over = hostile.post("/v1/questions", headers=auth(KEY_A), json=body)
    assert over.status_code == 429 and "2 jobs queued or running" in over.json()["detail"]
    hostile.delete(f"/v1/jobs/{another.json()['id']}", headers=auth(KEY_A))


def test_a_key_holds_a_bounded_number_of_waits(hostile, clips, fake_model):
    video_id = upload(hostile, KEY_B, clips[0]).json()["id"]
    fake_model.delay_s = 3
    body = {"video_id": video_id, "question": "Waiting?", "cache": False}
    refusals = wait_refusals(hostile, hostile, KEY_B, body)
    assert refusals and "1 open wait= requests" in refusals[0]


def wait_refusals(holder: httpx.Client, prober: httpx.Client, key: str, body: dict) -> list[str]:
    """Holds a 5-s ``wait=`` request of ``key`` on ``holder`` (from a thread) while ``prober`` asks for another
    wait; returns the details of the 429s that refused it. A probe names no video, so that one let through ends
    at once (404): a second wait is refused before the video is even looked up."""
    held = []
    waiting = threading.Thread(target=lambda: held.append(
        holder.post("/v1/questions?wait=5", headers=auth(key), json=body)))
    waiting.start()
    time.sleep(0.5)  # the held wait takes its slot first (a probe let through holds the slot while it runs)
    refusals = []
    deadline = time.monotonic() + 4
    while not refusals and time.monotonic() < deadline:
        reply = prober.post("/v1/questions?wait=0.2", headers=auth(key), json={**body, "video_id": "0" * 64})
        refusals += [reply.json()["detail"]] if reply.status_code == 429 else []
    waiting.join()
    assert held[0].status_code in (200, 202), held[0].text
    return refusals


def test_streams_and_waits_are_limited_per_key_in_all_api_processes_and_a_crash_frees_them(start, own_redis,
                                                                                          tmp_path, clips):
    lease_s = 2
    env = service_env(tmp_path, own_redis.url, "http://127.0.0.1:9", api_keys=KEYS, max_streams_per_key=2,
                      max_waits_per_key=1, slot_lease_s=lease_s)  # no worker: the job stays queued, its stream open
    first, second = start("serve", env), start("serve", env)
    with httpx.Client(base_url=first.url, timeout=30) as one, httpx.Client(base_url=second.url, timeout=30) as two, \
            ExitStack() as held:
        body = {"video_id": upload(one, KEY_A, clips[0]).json()["id"], "question": "Held?"}
        path = f"/v1/jobs/{one.post('/v1/questions', headers=auth(KEY_A), json=body).json()['id']}/events"
        for _ in range(2):
            assert held.enter_context(one.stream("GET", path, headers=auth(KEY_A))).status_code == 200
        status, why = opened(two, path)
        assert status == 429 and "2 open event streams" in why
        refusals = wait_refusals(one, two, KEY_A, body)
        assert refusals and "1 open wait= requests" in refusals[0]
        assert opened(two, path)[0] == 429  # held past their first lease: renewed

        os.kill(first.process.pid, signal.SIGKILL)  # its streams' slots are not given back: their leases end
        killed = time.monotonic()
        while opened(two, path)[0] != 200 and time.monotonic() - killed < 5 * lease_s:
            time.sleep(0.1)
        assert opened(two, path)[0] == 200 and time.monotonic() - killed < 5 * lease_s


def opened(client: httpx.Client, path: str) -> tuple[int, str]:
    """The status of an event stream of key A's and, when refused, why; the stream is closed at once."""
    with client.stream("GET", path, headers=auth(KEY_A)) as stream:
        return stream.status_code, "" if stream.status_code == 200 else stream.read().decode()


def test_random_methods_do_not_grow_the_metrics_which_need_a_key(hostile):
    keyless = hostile.get("/metrics")  # 401, or 429 once this address has used its requests without a key
    assert keyless.status_code in {401, 429} and "sportlens_" not in keyless.text
    hostile.get("/metrics", headers=auth(KEY_C))
    before = hostile.get("/metrics", headers=auth(KEY_C)).text
    rng = random.Random(0)
    for _ in range(200):
        method = "".join(rng.choices(string.ascii_uppercase, k=12))
        hostile.request(method, f"/v1/videos/{'0' * 64}", headers=auth(KEY_C))
    after = hostile.get("/metrics", headers=auth(KEY_C)).text
    assert len(after) - len(before) < 4000  # one more label value, however many methods were made up
    methods = set(re.findall(r'method="([^"]*)"', after))
    assert "other" in methods and methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}


def test_quotas_per_key_and_in_all_count_each_video_once(start, own_redis, tmp_path, clips):
    size_mb = max(c.stat().st_size for c in clips) / 2**20
    api = start("serve", service_env(tmp_path, own_redis.url, "http://127.0.0.1:9", api_keys=KEYS,
                                     video_quota_mb_per_key=1.5 * size_mb, video_quota_mb=2.5 * size_mb))
    with httpx.Client(base_url=api.url, timeout=30) as client:
        first = upload(client, KEY_A, clips[0])
        assert first.status_code == 201
        over_key = upload(client, KEY_A, clips[1])
        assert over_key.status_code == 413 and "this key's videos would pass its quota" in over_key.json()["detail"]
        assert upload(client, KEY_B, clips[1]).status_code == 201
        over_all = upload(client, KEY_C, clips[2])
        assert over_all.status_code == 507 and "service's videos would pass its quota" in over_all.json()["detail"]
        again = upload(client, KEY_A, clips[0])  # bytes the key holds already take no more of either quota
        assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
        assert upload(client, KEY_B, clips[1]).status_code == 201
        assert upload(client, KEY_A, clips[1]).status_code == 413  # a new claim still does not fit
        assert client.delete(f"/v1/videos/{first.json()['id']}", headers=auth(KEY_A)).status_code == 204
        assert upload(client, KEY_A, clips[1]).status_code == 201  # the re-upload counted nothing: all room is back
        assert upload(client, KEY_C, clips[2]).status_code == 201  # deleting gave the room back


def test_an_upload_that_would_fill_the_disk_is_507(start, own_redis, tmp_path, clips):
    api = start("serve", service_env(tmp_path, own_redis.url, "http://127.0.0.1:9", api_keys=KEYS,
                                     min_free_disk_mb=2**40))
    with httpx.Client(base_url=api.url, timeout=30) as client:
        full = upload(client, KEY_A, clips[0])
    assert full.status_code == 507 and "nearly full" in full.json()["detail"]


def test_identical_questions_coalesce_and_the_cache_is_per_key(hostile, clips, fake_model):
    video_id = upload(hostile, KEY_C, clips[2]).json()["id"]
    fake_model.delay_s = 0.5
    body = {"video_id": video_id, "question": "Who fouls first?"}
    calls = fake_model.calls
    first = hostile.post("/v1/questions", headers=auth(KEY_C), json=body).json()
    second = hostile.post("/v1/questions?wait=20", headers=auth(KEY_C), json=body).json()
    assert second["id"] == first["id"] and second["status"] == "complete" and not second["cached"]
    assert fake_model.calls - calls == 2  # one run of two turns answered both
    hits = _cache_hits(hostile)
    again = hostile.post("/v1/questions", headers=auth(KEY_C), json=body)
    assert again.status_code == 200 and again.json()["cached"] and again.json()["id"] != first["id"]
    assert _cache_hits(hostile) == hits + 1
    if upload(hostile, KEY_B, clips[2]).status_code == 201:  # B within its quota: B's question is B's own run
        other = hostile.post("/v1/questions?wait=20", headers=auth(KEY_B), json=body).json()
        assert not other["cached"] and other["id"] != first["id"]


def test_a_cache_hit_found_by_the_worker_says_cached_and_counts_once(start, own_redis, tmp_path, clips, fake_model):
    env = service_env(tmp_path, own_redis.url, fake_model.url, api_keys=KEYS, worker_concurrency=1)
    api = start("serve", env)
    with httpx.Client(base_url=api.url, timeout=30) as client:
        body = {"video_id": upload(client, KEY_C, clips[0]).json()["id"], "question": "Who scores?"}
        calls = fake_model.calls
        # Both queued before a worker runs; the first skips the cache, so the second is not joined to it.
        first = client.post("/v1/questions", headers=auth(KEY_C), json={**body, "cache": False}).json()
        second = client.post("/v1/questions", headers=auth(KEY_C), json=body).json()
        assert second["id"] != first["id"] and second["status"] == "queued"
        start("worker", env)  # one job at a time: the second starts once the first's answer is in the cache
        deadline = time.monotonic() + 60
        while (job := client.get(f"/v1/jobs/{second['id']}", headers=auth(KEY_C)).json())["status"] != "complete":
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["cached"] and job["result"] is not None
        assert fake_model.calls - calls == 2  # one run of two turns answered both
        assert _cache_hits(client) == 1


def _cache_hits(client) -> float:
    metrics = client.get("/metrics", headers=auth(KEY_C)).text
    return float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("sportlens_cache_hits")))


def test_without_keys_only_this_machine_is_served_and_the_page_is_locked_down(service, tmp_path):
    rebound = service.get("/healthz", headers={"Host": "attacker.example:8080"})
    assert rebound.status_code == 421 and "SPORTLENS_API_KEYS" in rebound.json()["detail"]
    page = service.get("/", headers={"Host": "localhost"})
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "'sha256-" in policy
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    env = service_env(tmp_path, None, None)
    refused = subprocess.run([sys.executable, "-m", "sportlens.cli", "serve", "--host", "0.0.0.0"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "binds loopback only" in refused.stderr
