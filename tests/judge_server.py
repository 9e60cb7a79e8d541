"""A judge on loopback for tests: a real HTTP server that speaks OpenAI's chat API and replies by a rule of the test's.

The rule sees the request body and returns (HTTP status, message content); every body received is kept, so a test
can check what the judge was sent (rubric version, temperature).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Rule = Callable[[dict], tuple[int, str]]


def verdict(correct: bool, reason: str = "as the reference") -> tuple[int, str]:
    """A reply inside the rubric."""
    return 200, json.dumps({"verdict": "correct" if correct else "incorrect", "reason": reason})


def graded_answer(body: dict) -> str:
    """The answer a judge request asks to grade (the last line of its user message)."""
    return body["messages"][-1]["content"].rsplit("Answer to grade: ", 1)[1]


class JudgeServer:
    """``with JudgeServer(rule) as judge:`` serves on ``judge.url`` until the block ends."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.bodies: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 — the name http.server calls
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                status, content = server.rule(body)
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
                data = payload.encode() if status == 200 else b"overloaded"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_port}/v1"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> JudgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()
