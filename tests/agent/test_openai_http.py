"""The OpenAI-compatible HTTP backend against the wire protocol.

``OpenAIServerFake`` speaks just enough of the chat-completions API to check what the backend sends and how it
reads answers and faults (5xx, refusals, a dead port). The real vLLM server is exercised in tests/integration.
"""
import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from sportlens.agent.backends.base import BackendError, ChatMessage
from sportlens.agent.backends.openai_http import OpenAIHTTPBackend
from sportlens.tools.frames import Frame

COMPLETION = {
    "choices": [{
        "message": {"role": "assistant", "content": "<think>x</think><tool_call>{}</tool_call>"},
        "logprobs": {"content": [{"token": "<think>", "logprob": -0.1}, {"token": "x", "logprob": -2.0}]},
    }],
    "usage": {"prompt_tokens": 1234, "completion_tokens": 2},
}


class OpenAIServerFake:
    """A loopback HTTP server that records requests and answers from a queue of (status, body).

    A body that is a list of JSON objects goes as server-sent events, one each, then ``data: [DONE]``.
    """

    def __init__(self):
        self.requests: list[dict] = []
        self.replies: list[tuple[int, dict | str]] = []
        self.delay_s = 0.0
        self.in_flight = self.most_in_flight = 0
        lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                    status, reply = fake.replies.pop(0) if fake.replies else (200, COMPLETION)
                    fake.in_flight += 1
                    fake.most_in_flight = max(fake.most_in_flight, fake.in_flight)
                time.sleep(fake.delay_s)
                with lock:
                    fake.in_flight -= 1
                if isinstance(reply, list):
                    events = [f"data: {json.dumps(event)}\n\n" for event in reply] + ["data: [DONE]\n\n"]
                    data, kind = "".join(events).encode(), "text/event-stream"
                else:
                    data, kind = (reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def server():
    fake = OpenAIServerFake()
    yield fake
    fake.close()


def chat():
    image = np.zeros((36, 64, 3), np.uint8)
    image[:, :32] = 255
    return [
        ChatMessage("system", ["rules"]),
        ChatMessage("user", ["Question: q", "\nframe 3 (0.1s):", Frame(3, 0.1, image)]),
        ChatMessage("assistant", ["<think>a</think>"]),
    ]


def test_request_carries_frames_as_data_urls_logprobs_and_the_constraint(server):
    backend = OpenAIHTTPBackend(server.url + "/v1", "qwen", api_key="k1", backoff_s=0)
    generation = backend.generate(chat(), max_tokens=64, temperature=0.0, constraint="<think>.*")
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer k1"
    body = sent["body"]
    assert body["model"] == "qwen" and body["logprobs"] is True and body["skip_special_tokens"] is False
    assert body["structured_outputs"] == {"regex": "<think>.*"} and body["max_tokens"] == 64
    assert body["messages"][0] == {"role": "system", "content": "rules"}
    assert body["messages"][2] == {"role": "assistant", "content": "<think>a</think>"}
    user = body["messages"][1]["content"]
    assert [part["type"] for part in user] == ["text", "text", "image_url"]
    url = user[2]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert decoded.shape == (36, 64, 3) and decoded[:, :30].mean() > 240 and decoded[:, 34:].mean() < 15
    assert generation.text == COMPLETION["choices"][0]["message"]["content"]
    assert (generation.tokens_in, generation.tokens_out) == (1234, 2)
    assert [(t.token, t.logprob) for t in generation.logprobs] == [("<think>", -0.1), ("x", -2.0)]


def _images(request: dict) -> list[dict]:
    return [part for message in request["body"]["messages"] if isinstance(message["content"], list)
            for part in message["content"] if part["type"] == "image_url"]


def _two_turns() -> tuple[list[ChatMessage], list[ChatMessage]]:
    image = np.full((36, 64, 3), 128, np.uint8)
    first = [ChatMessage("user", ["q", Frame(0, 0.0, image), Frame(1, 0.1, image + 1)])]
    return first, first + [ChatMessage("assistant", ["<think>a</think>"]), ChatMessage("user", [Frame(2, 0.2, image + 2)])]


CACHE_MISS = (400, {"error": {"message": "Cache miss for image at index 0 but data is not provided."}})


def test_each_frame_is_encoded_once_and_sent_in_full_once_then_named_by_its_uuid(server, monkeypatch):
    encoded = []
    to_pil = Frame.to_pil
    monkeypatch.setattr(Frame, "to_pil", lambda frame: encoded.append(frame.index) or to_pil(frame))
    first, second = _two_turns()
    backend = OpenAIHTTPBackend(server.url, "qwen")
    backend.generate(first, max_tokens=8)
    backend.generate(second, max_tokens=8)
    backend.close()
    assert sorted(encoded) == [0, 1, 2]
    sent, resent = (_images(request) for request in server.requests)
    assert all(part["image_url"]["url"].startswith("data:image/jpeg;base64,") for part in sent)
    assert len({part["uuid"] for part in sent}) == 2  # distinct pixels, distinct uuids
    assert [part["uuid"] for part in resent[:2]] == [part["uuid"] for part in sent]
    assert [part["image_url"] for part in resent[:2]] == [None, None]  # the server holds them
    assert resent[2]["image_url"]["url"].startswith("data:image/jpeg;base64,") and resent[2]["uuid"] not in (
        sent[0]["uuid"], sent[1]["uuid"])


def test_a_frame_the_server_no_longer_holds_goes_again_in_full(server):
    first, second = _two_turns()
    backend = OpenAIHTTPBackend(server.url, "qwen", retries=0)
    backend.generate(first, max_tokens=8)
    server.replies = [CACHE_MISS]
    assert backend.generate(second, max_tokens=8).tokens_out == 2
    missed, full = (_images(request) for request in server.requests[1:])
    assert [part["image_url"] for part in missed[:2]] == [None, None]
    assert all(part["image_url"]["url"].startswith("data:") for part in full) and len(full) == 3
    backend.generate(second, max_tokens=8)  # a miss now and then: frames are still left out afterwards
    assert [part["image_url"] for part in _images(server.requests[3])] == [None, None, None]


def test_a_server_that_keeps_missing_or_refuses_left_out_frames_gets_every_frame_in_full(server):
    first, second = _two_turns()
    backend = OpenAIHTTPBackend(server.url, "qwen", retries=0)
    backend.generate(first, max_tokens=8)
    for _ in range(3):  # a server whose cache holds nothing
        server.replies = [CACHE_MISS]
        backend.generate(second, max_tokens=8)
    backend.generate(second, max_tokens=8)
    assert len(server.requests) == 8 and all("data:" in part["image_url"]["url"] for part in _images(server.requests[7]))

    other = OpenAIHTTPBackend(server.url, "qwen", retries=0)
    other.generate(first, max_tokens=8)
    server.replies = [(400, {"error": {"message": "image_url: none is not an allowed value"}})]  # not vLLM
    other.generate(second, max_tokens=8)
    other.generate(second, max_tokens=8)
    assert all("uuid" not in part and part["image_url"]["url"] for part in _images(server.requests[-1]))


def test_a_refusal_of_the_whole_request_stays_the_servers_own_words(server):
    first, second = _two_turns()
    backend = OpenAIHTTPBackend(server.url, "qwen", retries=0)
    backend.generate(first, max_tokens=8)
    too_long = (400, {"error": {"message": "This model's maximum context length is 4096 tokens."}})
    server.replies = [too_long, too_long]
    with pytest.raises(BackendError, match="does not fit the model's context: This model's maximum"):
        backend.generate(second, max_tokens=8)
    assert len(server.requests) == 3 and backend.reuse_frames  # sent once more in full, then given up


def test_frames_go_without_uuids_when_reuse_is_off(server):
    first, second = _two_turns()
    backend = OpenAIHTTPBackend(server.url, "qwen", reuse_frames=False)
    backend.generate(first, max_tokens=8)
    backend.generate(second, max_tokens=8)
    assert all(set(part) == {"type", "image_url"} and part["image_url"]["url"].startswith("data:")
               for request in server.requests for part in _images(request))


def test_no_constraint_sends_no_structured_outputs(server):
    OpenAIHTTPBackend(server.url, "qwen").generate(chat(), max_tokens=8)
    assert "structured_outputs" not in server.requests[0]["body"]


def test_server_errors_are_retried_then_succeed(server):
    server.replies = [(503, {"error": {"message": "busy"}}), (502, {"message": "bad gateway"})]
    generation = OpenAIHTTPBackend(server.url, "qwen", retries=2, backoff_s=0).generate(chat(), max_tokens=8)
    assert len(server.requests) == 3 and generation.tokens_out == 2


def test_a_refusal_is_not_retried_and_names_the_cause(server):
    server.replies = [(404, {"error": {"message": "The model `nope` does not exist."}})]
    with pytest.raises(BackendError, match="HTTP 404.*does not exist"):
        OpenAIHTTPBackend(server.url, "nope", retries=3, backoff_s=0).generate(chat(), max_tokens=8)
    assert len(server.requests) == 1


def test_persistent_5xx_ends_in_a_clear_error(server):
    server.replies = [(500, {"error": {"message": "boom"}})] * 3
    with pytest.raises(BackendError, match="HTTP 500.*boom"):
        OpenAIHTTPBackend(server.url, "qwen", retries=2, backoff_s=0).generate(chat(), max_tokens=8)


def test_an_answer_without_choices_is_a_backend_error(server):
    server.replies = [(200, {"object": "error"})]
    with pytest.raises(BackendError, match="no usable completion"):
        OpenAIHTTPBackend(server.url, "qwen").generate(chat(), max_tokens=8)


def test_unreachable_server_is_a_clear_error():
    backend = OpenAIHTTPBackend("http://127.0.0.1:9", "qwen", retries=1, backoff_s=0)
    with pytest.raises(BackendError, match="cannot reach the model server at http://127.0.0.1:9"):
        backend.generate(chat(), max_tokens=8)


def test_an_answer_that_is_not_json_is_a_backend_error(server):
    server.replies = [(200, "<html>proxy login</html>")]
    with pytest.raises(BackendError, match="not JSON"):
        OpenAIHTTPBackend(server.url, "qwen").generate(chat(), max_tokens=8)


def test_the_end_of_turn_token_is_dropped_from_logprobs_as_in_process(server):
    reply = json.loads(json.dumps(COMPLETION))
    reply["choices"][0] |= {"message": {"content": "<answer>A</answer>"}, "finish_reason": "stop"}
    reply["choices"][0]["logprobs"]["content"] = [
        {"token": "<answer>", "logprob": -0.5}, {"token": "A", "logprob": -0.1},
        {"token": "</answer>", "logprob": -0.2}, {"token": "<|im_end|>", "logprob": -0.3},
    ]
    reply["usage"]["completion_tokens"] = 4
    server.replies = [(200, reply)]
    generation = OpenAIHTTPBackend(server.url, "qwen").generate(chat(), max_tokens=8)
    assert "".join(t.token for t in generation.logprobs) == generation.text and generation.tokens_out == 3


def streamed(pieces: list[tuple[str, float]], finish_reason: str = "stop") -> list[dict]:
    """vLLM's events for a chat completion written piece by piece, then its usage. A token that ends the turn
    comes with its logprob but adds no text, as vLLM streams it."""
    events = [{"choices": [{"index": 0, "delta": {"content": "" if text == "<|im_end|>" else text},
                            "logprobs": {"content": [{"token": text, "logprob": logprob}]}, "finish_reason": None}]}
              for text, logprob in pieces]
    events[-1]["choices"][0]["finish_reason"] = finish_reason
    return [*events, {"choices": [], "usage": {"prompt_tokens": 1234, "completion_tokens": len(pieces)}}]


def test_a_streamed_call_reports_the_text_as_it_grows_and_returns_what_an_unstreamed_one_would(server):
    pieces = [("<answer>", -0.5), ("A", -0.1), ("</answer>", -0.2), ("<|im_end|>", -0.3)]
    server.replies = [(200, streamed(pieces))]
    seen = []
    generation = OpenAIHTTPBackend(server.url, "qwen").generate(chat(), max_tokens=8, on_text=seen.append)
    body = server.requests[0]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert seen == ["<answer>", "<answer>A", "<answer>A</answer>"]
    assert generation.text == "<answer>A</answer>" and generation.tokens_in == 1234
    assert [t.logprob for t in generation.logprobs] == [-0.5, -0.1, -0.2] and generation.tokens_out == 3


def test_a_server_that_does_not_stream_is_read_in_one_piece(server):
    seen = []
    generation = OpenAIHTTPBackend(server.url, "qwen").generate(chat(), max_tokens=8, on_text=seen.append)
    assert server.requests[0]["body"]["stream"] is True
    assert generation.text == COMPLETION["choices"][0]["message"]["content"] and generation.tokens_in == 1234
    assert seen == []  # nothing was written before the whole turn: the agent decodes its frames after it


def test_an_error_event_in_a_stream_is_a_backend_error_in_the_servers_words(server):
    failure = {"error": {"message": "engine died", "type": "InternalServerError", "code": 500}}
    server.replies = [(200, [*streamed([("<think>", -0.1)])[:1], failure])]
    with pytest.raises(BackendError, match="failed while answering: engine died"):
        OpenAIHTTPBackend(server.url, "qwen").generate(chat(), max_tokens=8, on_text=lambda text: None)


def test_a_refused_streamed_call_names_the_cause(server):
    server.replies = [(400, {"error": {"message": "This model's maximum context length is 12288 tokens"}})]
    with pytest.raises(BackendError, match="does not fit the model's context"):
        OpenAIHTTPBackend(server.url, "qwen").generate(chat(), max_tokens=8, on_text=lambda text: None)


def test_requests_in_flight_are_bounded_per_instance(server):
    server.delay_s = 0.2
    backend = OpenAIHTTPBackend(server.url, "qwen", max_in_flight=2)
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: backend.generate(chat(), max_tokens=8), range(6)))
    assert len(server.requests) == 6 and server.most_in_flight == 2
    backend.close()


def test_a_call_past_its_deadline_fails_without_waiting_for_the_server(server):
    server.delay_s = 3.0
    backend = OpenAIHTTPBackend(server.url, "qwen", timeout_s=0.3, retries=5)
    started = time.perf_counter()
    with pytest.raises(BackendError, match="did not answer within 0.3 s"):
        backend.generate(chat(), max_tokens=8)
    assert time.perf_counter() - started < 1.5
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.generate(chat(), max_tokens=8)


def test_cancel_ends_the_calls_in_flight_and_leaves_the_backend_usable(server):
    server.delay_s = 3.0
    backend = OpenAIHTTPBackend(server.url, "qwen")
    with ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(backend.generate, chat(), max_tokens=8) for _ in range(2)]
        time.sleep(0.3)
        backend.cancel()
        for call in calls:
            with pytest.raises(BackendError, match="cancelled"):
                call.result(timeout=1.0)
    server.delay_s = 0.0
    assert backend.generate(chat(), max_tokens=8).tokens_out == 2
    backend.close()


def test_scoring_renders_the_candidate_as_an_open_assistant_turn_and_sums_its_prompt_logprobs(server):
    server.replies = [
        (200, {"tokens": [7, 9], "count": 2}),
        (200, {"choices": [{"message": {"content": "x"}}], "prompt_logprobs": [
            None, {"3": {"logprob": -1.0}}, {"7": {"logprob": -0.25}}, {"9": {"logprob": -0.5}}]}),
    ]
    scores = OpenAIHTTPBackend(server.url, "qwen").score_continuations(chat()[:2], ["<answer>A</answer>"])
    assert scores == [-0.75]
    tokenize, score = (request["body"] for request in server.requests)
    assert server.requests[0]["path"] == "/tokenize" and tokenize["prompt"] == "<answer>A</answer>"
    assert tokenize["add_special_tokens"] is False
    assert score["messages"][-1] == {"role": "assistant", "content": "<answer>A</answer>"}
    assert score["continue_final_message"] is True and score["add_generation_prompt"] is False
    assert score["prompt_logprobs"] == 0


def test_scoring_refuses_a_prompt_that_does_not_end_in_the_candidate(server):
    server.replies = [
        (200, {"tokens": [7, 9]}),
        (200, {"choices": [{"message": {"content": "x"}}], "prompt_logprobs": [None, {"7": {"logprob": -0.2}},
                                                                                {"8": {"logprob": -0.5}}]}),
    ]
    with pytest.raises(BackendError, match="does not end in the tokens"):
        OpenAIHTTPBackend(server.url, "qwen").score_continuations(chat()[:2], ["ab"])
