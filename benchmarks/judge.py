"""The LLM judge for open answers, through any OpenAI-compatible chat endpoint.

The prompt and its rubric are versioned here (``JUDGE_VERSION``); every verdict records the version that
produced it, so reports from different rubrics are never mixed up silently. A judge that cannot be reached or
answers outside the rubric raises :class:`JudgeError`: the runner counts it as a judge failure, never as 0.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import httpx

JUDGE_VERSION = "judge-v1"

JUDGE_SYSTEM = """You grade answers to questions about sports video against a reference answer written by the referee who saw the play.
Rubric (judge-v1):
- correct: the answer states the same decisive facts as the reference: the same foul or event, the same player or team, the same penalty or outcome where the question asks for them. Wording, order and extra correct detail do not matter.
- incorrect: any decisive fact is missing, different or contradicted; a refusal; an answer to a different question.
Numbers, player numbers, team names and clock times must match exactly. Do not reward style or length.
Reply with one JSON object and nothing else: {"verdict": "correct" | "incorrect", "reason": "<one sentence>"}"""

JUDGE_USER = """Question: {question}
Reference answer: {reference}
Answer to grade: {answer}"""


class JudgeError(RuntimeError):
    """The judge gave no usable verdict (unreachable, an HTTP error, or a reply outside the rubric)."""


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str
    version: str = JUDGE_VERSION


class OpenAIJudge:
    """Grades open answers with a chat model behind ``POST {base_url}/v1/chat/completions`` (temperature 0).

    Args:
        base_url: the server's root, e.g. ``http://127.0.0.1:8001`` (a trailing ``/v1`` is accepted).
        model_name: the judging model's name on that server.
        api_key: sent as a bearer token when given.
        timeout_s: deadline for one verdict.
        transport: an httpx transport, for tests.
    """

    def __init__(
        self,
        base_url: str,
        model_name: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        root = root[: -len("/v1")] if root.endswith("/v1") else root
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model_name = model_name
        self._client = httpx.Client(base_url=root, timeout=timeout_s, headers=headers, transport=transport)

    def judge(self, question: str, reference: str, answer: str) -> Verdict:
        body = {
            "model": self.model_name,
            "temperature": 0.0,
            "max_tokens": 200,
            "messages": [
                {"role": "system", "content": JUDGE_SYSTEM},
                {"role": "user", "content": JUDGE_USER.format(question=question, reference=reference, answer=answer)},
            ],
        }
        try:
            response = self._client.post("/v1/chat/completions", json=body)
            response.raise_for_status()
            text = response.json()["choices"][0]["message"]["content"] or ""
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as error:
            raise JudgeError(f"judge {self.model_name} failed: {error!r}") from error
        return parse_verdict(text)

    def close(self) -> None:
        self._client.close()


def parse_verdict(text: str) -> Verdict:
    """The verdict in a judge's reply: the first JSON object holding "verdict" (a fenced block is fine)."""
    for match in re.finditer(r"\{.*?\}", text, re.DOTALL):
        try:
            reply = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        verdict = str(reply.get("verdict", "")).strip().lower() if isinstance(reply, dict) else ""
        if verdict in ("correct", "incorrect"):
            return Verdict(correct=verdict == "correct", reason=str(reply.get("reason", "")))
    raise JudgeError(f"judge reply holds no verdict of the rubric: {text[:200]!r}")
