"""The LLM judges for open answers, through any OpenAI-compatible chat endpoint, alone or as a panel.

The prompt and its rubric are versioned here (``JUDGE_VERSION``) and sampled at a pinned temperature; every
verdict records the version that produced it and :func:`judge_settings` goes into every report, so reports
from different rubrics are never mixed up silently. SportR averages three judges: :class:`JudgePanel` asks
each of its judges. A judge that cannot be reached or answers outside the rubric raises :class:`JudgeError`:
the runner counts it as a judge failure, never as 0.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import httpx

JUDGE_VERSION = "judge-v1"
JUDGE_TEMPERATURE = 0.0
JUDGE_MAX_TOKENS = 200

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


def judge_settings() -> dict:
    """What fixes a verdict besides the judging model: rubric version, sampling, and a hash of the prompt."""
    prompt = (JUDGE_SYSTEM + "\n" + JUDGE_USER).encode()
    return {"version": JUDGE_VERSION, "temperature": JUDGE_TEMPERATURE, "max_tokens": JUDGE_MAX_TOKENS,
            "prompt_sha256": hashlib.sha256(prompt).hexdigest()}


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str
    judge: str = ""
    version: str = JUDGE_VERSION


class OpenAIJudge:
    """Grades open answers with a chat model behind ``POST {base_url}/v1/chat/completions``.

    Args:
        base_url: the server's root, e.g. ``http://127.0.0.1:8001`` (a trailing ``/v1`` is accepted).
        model_name: the judging model's name on that server.
        api_key: sent as a bearer token when given.
        timeout_s: deadline for one verdict.

    ``name`` ("model@root") tells the judges of a panel apart in verdicts and reports.
    """

    def __init__(self, base_url: str, model_name: str, *, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        root = base_url.rstrip("/")
        root = root[: -len("/v1")] if root.endswith("/v1") else root
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model_name = model_name
        self.name = f"{model_name}@{root}"
        self._client = httpx.Client(base_url=root, timeout=timeout_s, headers=headers)

    def judge(self, question: str, reference: str, answer: str) -> Verdict:
        body = {
            "model": self.model_name,
            "temperature": JUDGE_TEMPERATURE,
            "max_tokens": JUDGE_MAX_TOKENS,
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
            raise JudgeError(f"judge {self.name} failed: {error!r}") from error
        try:
            verdict = parse_verdict(text)
        except JudgeError as error:
            raise JudgeError(f"judge {self.name}: {error}") from None
        return Verdict(correct=verdict.correct, reason=verdict.reason, judge=self.name)

    def close(self) -> None:
        self._client.close()


class JudgePanel:
    """Several judges grading the same answers; a verdict needs every one of them (so their agreement is
    measured on the same items), and the first failure fails the whole verdict."""

    def __init__(self, judges: list[OpenAIJudge]) -> None:
        if not judges:
            raise ValueError("a judge panel needs at least one judge")
        names = [judge.name for judge in judges]
        if len(set(names)) != len(names):
            raise ValueError(f"a judge panel names each judge once, not {names}")
        self.judges = judges

    @property
    def names(self) -> list[str]:
        return [judge.name for judge in self.judges]

    def judge(self, question: str, reference: str, answer: str) -> list[Verdict]:
        """Every judge's verdict, in panel order."""
        return [judge.judge(question, reference, answer) for judge in self.judges]

    def close(self) -> None:
        for judge in self.judges:
            judge.close()


def read_panel(path: Path) -> list[tuple[str, str, str | None]]:
    """The (url, model, api key) of each judge in a panel file.

    The file is a JSON list of ``{"url": ..., "model": ..., "api_key_env": ...}``; ``api_key_env`` (optional)
    names the environment variable holding that judge's key, so that no key sits in the file.
    """
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the judge panel: {error}") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f'{path}: a judge panel is a non-empty JSON list of {{"url": ..., "model": ...}}')
    panel = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) and entry[key] for key in ("url", "model")):
            raise ValueError(f'{path}: judge {number} needs "url" and "model" strings')
        variable = entry.get("api_key_env")
        if variable is not None and variable not in os.environ:
            raise ValueError(f"{path}: judge {number}: environment variable {variable} is not set")
        panel.append((entry["url"], entry["model"], os.environ[variable] if variable else None))
    return panel


def panel_from_flags(
    urls: list[str], models: list[str], api_key: str | None, panel_file: Path | None
) -> JudgePanel | None:
    """The panel that `sportlens bench` flags ask for: ``--judge-url``/``--judge-model`` pairs (one model may
    serve every URL) and the judges of ``--judge-panel``; None when no judge is asked for."""
    if bool(urls) != bool(models) or (len(models) > 1 and len(models) != len(urls)):
        raise ValueError("--judge-url and --judge-model go together: one --judge-model per --judge-url, or one for all")
    names = models if len(models) == len(urls) else models * len(urls)
    specs = [(url, model, api_key) for url, model in zip(urls, names)]
    specs += read_panel(panel_file) if panel_file is not None else []
    if not specs:
        return None
    return JudgePanel([OpenAIJudge(url, model, api_key=key) for url, model, key in specs])


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
