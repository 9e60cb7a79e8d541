"""A stand-in for a vLLM server: the OpenAI chat API on loopback, answering the agent protocol by script.

It replaces the model, never Redis: the service's jobs, queue and workers under test are all real.
Turn 1 asks for frames 10–40; turn 2 answers "A". ``delay_s`` slows each call, ``fail`` makes it answer 503.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOL_TURN = '<think>the foul is near the start</think><tool_call>{"name": "choose_frames", "arguments": {"frame_range": [10, 40]}}</tool_call>'
ANSWER_TURN = "<think>the red player trips the blue one</think><answer>A</answer>"


class FakeModelServer:
    def __init__(self) -> None:
        self.delay_s = 0.0
        self.fail = False
        self.calls = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if server.fail:
                    self._reply(503, {"error": {"message": "the model is down for maintenance"}})
                    return
                self._reply(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.calls += 1
                if server.fail:
                    self._reply(503, {"error": {"message": "the model is down for maintenance"}})
                    return
                time.sleep(server.delay_s)
                turns = sum(1 for message in body["messages"] if message["role"] == "assistant")
                text = TOOL_TURN if turns == 0 else ANSWER_TURN
                self._reply(200, {
                    "choices": [{"message": {"role": "assistant", "content": text},
                                 "logprobs": {"content": [{"token": text, "logprob": -0.1}]}}],
                    "usage": {"prompt_tokens": 1000, "completion_tokens": 20},
                })

            def _reply(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeModelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
