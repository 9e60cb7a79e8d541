"""A model served over an OpenAI-compatible chat API, such as a vLLM server, with frames as JPEG data URLs."""
from __future__ import annotations

import base64
import time

import httpx

from sportlens.agent.backends.base import BackendError, ChatMessage, Generation
from sportlens.agent.records import TokenLogprob
from sportlens.tools.frames import Frame


class OpenAIHTTPBackend:
    """Continues chats through ``POST {base_url}/v1/chat/completions``.

    Args:
        base_url: the server's root, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is accepted).
        model_name: the name the server serves the model under (``--served-model-name`` in vLLM).
        api_key: sent as a bearer token when given.
        timeout_s: deadline for one model call, connection included.
        retries: further tries after a connection error or a 5xx answer, with exponential backoff from
            ``backoff_s``; a 4xx answer is the request's fault and is never retried.
        jpeg_quality: frames travel as JPEG; 90 keeps the labels on a scoreboard readable.

    Special tokens are kept in the text (``skip_special_tokens: false``) because Qwen tokenizers make
    ``<tool_call>`` a special token and the protocol parser needs it.
    """

    def __init__(
        self,
        base_url: str,
        model_name: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        jpeg_quality: int = 90,
    ) -> None:
        root = base_url.rstrip("/")
        self.base_url = root[: -len("/v1")] if root.endswith("/v1") else root
        self.model_id = model_name
        self.retries = retries
        self.backoff_s = backoff_s
        self.jpeg_quality = jpeg_quality
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers)

    def generate(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        constraint: str | None = None,
    ) -> Generation:
        body: dict = {
            "model": self.model_id,
            "messages": [self._to_openai(message) for message in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "logprobs": True,
            "skip_special_tokens": False,
        }
        if constraint is not None:
            body["structured_outputs"] = {"regex": constraint}
        reply = self._post("/v1/chat/completions", body)
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] or ""
            usage = reply.get("usage") or {}
            content = (choice.get("logprobs") or {}).get("content") or []
            logprobs = [TokenLogprob(token=t["token"], logprob=t["logprob"]) for t in content]
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"{self.base_url} answered with no usable completion ({exc!r})") from exc
        return Generation(
            text=text,
            tokens_in=int(usage.get("prompt_tokens", 0)),
            tokens_out=int(usage.get("completion_tokens", len(logprobs))),
            logprobs=logprobs,
        )

    def close(self) -> None:
        self._client.close()

    def _to_openai(self, message: ChatMessage) -> dict:
        content = []
        for part in message.parts:
            if isinstance(part, Frame):
                data = base64.b64encode(part.jpeg(self.jpeg_quality)).decode("ascii")
                content.append({"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}})
            else:
                content.append({"type": "text", "text": part})
        if message.role != "user":  # system and assistant turns are text alone in the OpenAI schema
            return {"role": message.role, "content": "".join(c["text"] for c in content)}
        return {"role": message.role, "content": content}

    def _post(self, path: str, body: dict) -> dict:
        for attempt in range(self.retries + 1):
            try:
                response = self._client.post(path, json=body)
            except httpx.TimeoutException as exc:
                raise BackendError(f"model server at {self.base_url} did not answer in time") from exc
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise BackendError(f"cannot reach the model server at {self.base_url}: {exc}") from exc
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise BackendError(f"{self.base_url} answered with something that is not JSON") from exc
                if response.status_code < 500 or attempt == self.retries:
                    raise BackendError(
                        f"model server at {self.base_url} refused the request "
                        f"(HTTP {response.status_code}): {_error_text(response)}"
                    )
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")


def _error_text(response: httpx.Response) -> str:
    """The server's own words: vLLM puts them in ``{"error": {"message": …}}`` (older: ``{"message": …}``)."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:300]
    return str(payload)[:300]
