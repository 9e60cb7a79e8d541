"""Property-based: requests generated from the service's own OpenAPI document (schemathesis, on hypothesis) against
`sportlens serve` and `sportlens worker` on a real Redis, with API keys configured and without. No answer may be
a 5xx, and every answer must be one the document declares: status, content type, headers and body schema.

Schemathesis' pytest plugin does not run under pytest 9.2 (it sets a node attribute pytest no longer has), so the
operations' hypothesis strategies drive plain pytest tests; `case.call_and_validate` runs schemathesis' checks.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from service_support import KEY_A, ServiceProcess, service_env

from sportlens.service.auth import hash_key

ROUTES = {
    ("POST", "/v1/videos"), ("GET", "/v1/videos/{video_id}"), ("DELETE", "/v1/videos/{video_id}"),
    ("POST", "/v1/questions"),
    ("GET", "/v1/jobs/{job_id}"), ("DELETE", "/v1/jobs/{job_id}"), ("GET", "/v1/jobs/{job_id}/events"),
    ("GET", "/v1/jobs/{job_id}/frames/{index}.jpg"),
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
}
EXAMPLES = 40  # per route and configuration; the whole module stays well under 90 s on 2 cores


@pytest.fixture(scope="module", params=["keys", "open"])
def api(request, tmp_path_factory, redis_server, fake_model):
    """One API and one worker; "keys": one API key (and requests sent with it, or with none), "open": no auth."""
    tmp = tmp_path_factory.mktemp(f"properties-{request.param}")
    keyed = request.param == "keys"
    extra = {"api_keys": hash_key(KEY_A), "failed_auth_per_minute": 10**6} if keyed else {}
    env = service_env(tmp, redis_server.url, fake_model.url, queue_name=f"q-{tmp.name}", max_wait_s=1,
                      max_upload_mb=1, rate_limit_per_minute=10**6, **extra)
    served = ServiceProcess("serve", env, tmp / "api.log").wait_ready()
    worker = ServiceProcess("worker", env, tmp / "worker.log")
    yield SimpleNamespace(url=served.url, keyed=keyed, headers={"Authorization": f"Bearer {KEY_A}"} if keyed else {},
                          schema=schemathesis.openapi.from_url(f"{served.url}/openapi.json"))
    worker.stop()
    served.stop()


@pytest.fixture
def known(api, clip) -> dict:
    """Ids that exist, so that generated requests reach past the 404s: a video, a finished job and a frame it saw.

    Uploaded afresh for every route: a generated DELETE may have removed the video.
    """
    with httpx.Client(base_url=api.url, headers=api.headers, timeout=30) as client:
        video_id = client.post("/v1/videos", files={"file": ("clip.mp4", clip.read_bytes())}).json()["id"]
        job = client.post("/v1/questions?wait=1", json={"video_id": video_id, "question": "Who fouls?"}).json()
        deadline = time.monotonic() + 30
        while job["status"] != "complete" and time.monotonic() < deadline:
            time.sleep(0.1)
            job = client.get(f"/v1/jobs/{job['id']}").json()
    assert job["status"] == "complete", job
    return {"video_id": video_id, "job_id": job["id"],
            "index": job["result"]["trajectory"]["initial_frames"][0]["index"]}


def test_the_document_names_every_route(api):
    operations = {(operation.method.upper(), operation.path) for operation in
                  (result.ok() for result in api.schema.get_all_operations())}
    assert operations == ROUTES
    security = [operation.definition.raw.get("security") for operation in
                (result.ok() for result in api.schema.get_all_operations()) if operation.path.startswith("/v1")]
    assert all(security) if api.keyed else not any(security)


@pytest.mark.parametrize("method, path", sorted(ROUTES))
def test_generated_requests_get_no_5xx_and_documented_answers(api, known, method, path):
    operation = api.schema[path][method]
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if path.startswith("/v1"):  # the probes take no input to get wrong
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
        real = {name: value for name, value in known.items() if f"{{{name}}}" in path}
        if real:
            strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real))
    if path == "/v1/questions":  # about the video that exists, so that jobs run
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE).map(lambda case: _about(case, known)))

    @given(case=st.one_of(strategies), with_key=st.booleans())
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    def check(case, with_key):
        headers = api.headers if with_key else {}
        case.call_and_validate(base_url=api.url, headers=headers, timeout=20, excluded_checks=_not_provable(case))

    check()


def _about(case, known: dict):
    if isinstance(case.body, dict):
        case.body["video_id"] = known["video_id"]
    return case


def _not_provable(case) -> list:
    """Schema-valid requests the service rightly refuses for what no JSON Schema can say: an upload that is not a
    video (422/415: the content decides), and alpha or selective asked of a service without a calibration (422)."""
    if case.operation.path == "/v1/videos" and case.method == "POST":
        return [positive_data_acceptance]
    if case.operation.path == "/v1/questions" and isinstance(case.body, dict) and (
            case.body.get("alpha") is not None or case.body.get("selective")):
        return [positive_data_acceptance]
    return []
