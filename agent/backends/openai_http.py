"""A model served over an OpenAI-compatible chat API, such as a vLLM server, with frames as JPEG data URLs."""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import json
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from sportlens.agent.backends.base import BackendError, ChatMessage, Generation
from sportlens.agent.records import TokenLogprob
from sportlens.tools.frames import Frame

T = TypeVar("T")


class OpenAIHTTPBackend:
    """Continues chats through ``POST {base_url}/v1/chat/completions``; scores continuations on vLLM.

    Args:
        base_url: the server's root, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is accepted).
        model_name: the name the server serves the model under (``--served-model-name`` in vLLM).
        api_key: sent as a bearer token when given.
        timeout_s: the deadline of one call (``generate`` or ``score_continuations``), waiting for a free
            slot, retries and backoff included.
        retries: further tries after a connection error or a 5xx answer, with exponential backoff from
            ``backoff_s``; a 4xx answer is the request's fault and is never retried.
        max_in_flight: requests this instance has at the server at once; more calls wait for a slot.
        jpeg_quality: frames travel as JPEG; 90 keeps the labels on a scoreboard readable.
        reuse_frames: send a frame's pixels once. Every frame goes with a ``uuid`` naming its JPEG bytes, and a
            frame this instance already sent goes as that ``uuid`` alone: vLLM takes it from its multimodal
            processor cache instead of decoding and hashing the resent JPEG. A chat resends all earlier frames
            with every turn (and with every scored candidate), so this halves what a 3-turn question sends.
            When the server answers that it no longer holds a frame (evicted, restarted), or refuses such a
            request for any other reason, the request goes again with every frame in full; after
            ``_MISSES_BEFORE_GIVING_UP`` such answers in a row, or a refusal that was not a cache miss, this
            instance sends every frame in full from then on (a server without the cache, or not vLLM).

    A call given ``on_text`` streams its answer (server-sent events) and reports the text as it grows; the
    Generation it returns is the one an unstreamed call gives. Special tokens are kept in the text
    (``skip_special_tokens: false``) because Qwen tokenizers make ``<tool_call>`` a special token and the
    protocol parser needs it. Calls may come from many threads. The
    HTTP work runs on an event loop thread of the instance, so a call past its deadline, or ended by
    ``cancel()`` or by Ctrl-C in its thread, closes its connection, and vLLM aborts a request whose client left.
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
        max_in_flight: int = 8,
        jpeg_quality: int = 90,
        reuse_frames: bool = True,
    ) -> None:
        root = base_url.rstrip("/")
        self.base_url = root[: -len("/v1")] if root.endswith("/v1") else root
        self.model_id = model_name
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.jpeg_quality = jpeg_quality
        self.reuse_frames = reuse_frames
        self._frames_at_server: dict[str, None] = {}  # uuids sent in full, oldest first; bounded
        self._misses_in_a_row = 0
        self._frames_lock = threading.Lock()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=None, headers=headers)  # deadline: _call
        self._slots = asyncio.Semaphore(max_in_flight)
        self._calls: set[asyncio.Task] = set()
        self._cancels = 0  # cancel() calls so far: a call begun before one is cancelled even if not yet running
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-http", daemon=True)
        self._thread.start()

    def generate(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        constraint: str | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        body: dict = {
            "model": self.model_id,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "logprobs": True,
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
        }
        if constraint is not None:
            body["structured_outputs"] = {"regex": constraint}
        if on_text is not None:
            body["stream"], body["stream_options"] = True, {"include_usage": True}
        reply = self._with_frames(
            messages, lambda chat: self._post("/v1/chat/completions", {**body, "messages": chat}, on_text)
        )
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] or ""
            usage = reply.get("usage") or {}
            content = (choice.get("logprobs") or {}).get("content") or []
            logprobs = [TokenLogprob(token=t["token"], logprob=t["logprob"]) for t in content]
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"{self.base_url} answered with no usable completion ({exc!r})") from exc
        tokens_out = int(usage.get("completion_tokens", len(logprobs)))
        if logprobs and choice.get("finish_reason") == "stop" and not text.endswith(logprobs[-1].token):
            logprobs.pop()  # the end-of-turn token: scored, but not part of the text (as in-process)
            tokens_out -= 1
        return Generation(text=text, tokens_in=int(usage.get("prompt_tokens", 0)), tokens_out=tokens_out,
                          logprobs=logprobs)

    def score_continuations(self, messages: list[ChatMessage], continuations: list[str]) -> list[float]:
        """The total log-probability the model gives each continuation text right after the generation prompt.

        Teacher-forced and raw, like the transformers backend's, on vLLM: the server renders the chat with its
        own template, the continuation as an open final assistant turn (``continue_final_message``), and returns
        ``prompt_logprobs``. The continuation's tokens are the prompt's last ones; ``POST /tokenize`` counts them
        and their ids are checked against the ids scored. Candidates are scored concurrently, within the slots.
        """
        if not all(continuations):
            raise BackendError("cannot score an empty continuation")

        async def score_all(chat: list[dict]) -> list[float]:
            try:
                async with asyncio.TaskGroup() as group:  # a failure cancels the other candidates' requests
                    tasks = [group.create_task(self._score(chat, text)) for text in continuations]
            except ExceptionGroup as failures:
                raise failures.exceptions[0] from None
            return [task.result() for task in tasks]

        return self._with_frames(messages, score_all)

    def cancel(self) -> None:
        """End every call of this instance begun so far (each raises BackendError); later calls run as usual."""
        self._cancels += 1
        self._loop.call_soon_threadsafe(lambda: [task.cancel() for task in list(self._calls)])

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.cancel()
        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _with_frames(self, messages: list[ChatMessage], post: Callable[[list[dict]], Awaitable[T]]) -> T:
        """Runs ``post`` with the chat, frames the server holds left out; once more in full if it misses one."""
        with self._frames_lock:
            held = set(self._frames_at_server) if self.reuse_frames else set()
        chat, sent = self._to_openai_chat(messages, held)
        try:
            result = self._run(lambda: post(chat))
        except BackendError as refusal:
            if not (left_out := sent & held) or not isinstance(refusal, _Refused) or refusal.status != 400:
                raise
            full, _ = self._to_openai_chat(messages, set())
            result = self._run(lambda: post(full))  # raises as the server's own refusal if that was the cause
            with self._frames_lock:
                self._misses_in_a_row += 1
                for uuid in left_out:
                    self._frames_at_server.pop(uuid, None)
                if self._misses_in_a_row >= _MISSES_BEFORE_GIVING_UP or "cache miss" not in str(refusal).lower():
                    self.reuse_frames = False
        else:
            with self._frames_lock:
                if sent & held:
                    self._misses_in_a_row = 0
        if self.reuse_frames:
            with self._frames_lock:
                for uuid in sent:
                    self._frames_at_server[uuid] = None
                while len(self._frames_at_server) > _FRAMES_REMEMBERED:
                    del self._frames_at_server[next(iter(self._frames_at_server))]
        return result

    def _to_openai_chat(self, messages: list[ChatMessage], held: set[str]) -> tuple[list[dict], set[str]]:
        """The chat in the OpenAI schema, and the uuids of its frames; frames in ``held`` go as their uuid alone.

        Each frame keeps its JPEG (``Frame.jpeg``), so the frames of earlier turns are encoded once."""
        uuids: set[str] = set()
        chat = [self._to_openai(message, held, uuids) for message in messages]
        return chat, uuids

    def _to_openai(self, message: ChatMessage, held: set[str], uuids: set[str]) -> dict:
        content = []
        for part in message.parts:
            if isinstance(part, Frame):
                jpeg = part.jpeg(self.jpeg_quality)
                if not self.reuse_frames:
                    content.append({"type": "image_url", "image_url": _data_url(jpeg)})
                    continue
                uuid = "jpeg-" + hashlib.blake2b(jpeg, digest_size=16).hexdigest()
                uuids.add(uuid)
                image = None if uuid in held else _data_url(jpeg)
                content.append({"type": "image_url", "image_url": image, "uuid": uuid})
            else:
                content.append({"type": "text", "text": part})
        if message.role != "user":  # system and assistant turns are text alone in the OpenAI schema
            return {"role": message.role, "content": "".join(c["text"] for c in content)}
        return {"role": message.role, "content": content}

    def _run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Runs one call on the loop thread and waits for it; an interrupt of the waiting thread ends the call."""
        if self._loop.is_closed():
            raise BackendError("the backend is closed")
        future = asyncio.run_coroutine_threadsafe(self._call(work, self._cancels), self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise BackendError(f"the call to the model server at {self.base_url} was cancelled") from None
        except BaseException:
            future.cancel()
            raise

    async def _call(self, work: Callable[[], Awaitable[T]], cancels_before: int) -> T:
        task = asyncio.current_task()
        self._calls.add(task)
        try:
            if self._cancels != cancels_before:
                raise asyncio.CancelledError
            async with asyncio.timeout(self.timeout_s):
                return await work()
        except TimeoutError:
            raise BackendError(f"model server at {self.base_url} did not answer within {self.timeout_s:g} s") from None
        finally:
            self._calls.discard(task)

    async def _score(self, chat: list[dict], text: str) -> float:
        tokenized = await self._post("/tokenize", {"model": self.model_id, "prompt": text, "add_special_tokens": False})
        scored = await self._post("/v1/chat/completions", {
            "model": self.model_id,
            "messages": [*chat, {"role": "assistant", "content": text}],
            "add_generation_prompt": False,
            "continue_final_message": True,
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": 0,
        })
        try:
            ids = [str(token) for token in tokenized["tokens"]]
            positions = scored["prompt_logprobs"][-len(ids):]
            if len(positions) == len(ids) and all(token in entry for token, entry in zip(ids, positions)):
                return float(sum(entry[token]["logprob"] for token, entry in zip(ids, positions)))
        except (KeyError, TypeError) as exc:
            raise BackendError(f"{self.base_url} answered with no usable prompt_logprobs ({exc!r})") from exc
        raise BackendError(f"the server's prompt does not end in the tokens of the continuation {text[:40]!r}")

    async def _post(self, path: str, body: dict, on_text: Callable[[str], None] | None = None) -> dict:
        """POST with retries; a streamed completion (``on_text`` given) comes back in the shape of an unstreamed one."""
        for attempt in range(self.retries + 1):
            try:
                async with self._slots:
                    if on_text is None:
                        response = await self._client.post(path, json=body)
                        if response.status_code < 400:
                            return _json(response, self.base_url)
                    else:
                        async with self._client.stream("POST", path, json=body) as response:
                            streams = response.headers.get("content-type", "").startswith("text/event-stream")
                            if response.status_code < 400 and streams:
                                return await _streamed_completion(response, on_text, self.base_url)
                            await response.aread()
                            if response.status_code < 400:  # a server that ignores "stream" answers in one piece
                                return _json(response, self.base_url)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    why = str(exc) or type(exc).__name__
                    raise BackendError(f"cannot reach the model server at {self.base_url}: {why}") from exc
            else:
                if response.status_code < 500 or attempt == self.retries:
                    raise await self._refusal(response)
            await asyncio.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    async def _refusal(self, response: httpx.Response) -> _Refused:
        """The server's own words, with the cause named for the refusals a user can fix."""
        message = _error_text(response)
        if response.status_code == 404 and "model" in message.lower():
            try:
                async with self._slots:
                    models = (await self._client.get("/v1/models")).json()["data"]
                served = "; it serves " + ", ".join(repr(model["id"]) for model in models)
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                served = ""
            return _Refused(f"the model server at {self.base_url} serves no model named {self.model_id!r} "
                            f"(HTTP 404: {message}{served})", 404)
        if response.status_code == 400 and "context length" in message.lower():
            return _Refused(f"the request does not fit the model's context: {message} (show fewer frames, "
                            f"or serve the model with a larger --max-model-len)", 400)
        return _Refused(
            f"model server at {self.base_url} refused the request (HTTP {response.status_code}): {message}",
            response.status_code,
        )


_FRAMES_REMEMBERED = 65536  # uuids this instance believes the server holds (≈6 MB); older ones go in full again
_MISSES_BEFORE_GIVING_UP = 3


def _json(response: httpx.Response, server: str) -> dict:
    try:
        return response.json()
    except ValueError as exc:
        raise BackendError(f"{server} answered with something that is not JSON") from exc


async def _streamed_completion(response: httpx.Response, on_text: Callable[[str], None], server: str) -> dict:
    """Read a streamed chat completion to its end, calling ``on_text`` as the text grows; return it unstreamed."""
    text, tokens, finish_reason, usage = "", [], None, {}
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            break
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise BackendError(f"{server} streamed something that is not JSON") from exc
        if "error" in chunk:  # vLLM reports a failure after the stream began as an event of its own
            raise BackendError(f"model server at {server} failed while answering: {_error_text_of(chunk)}")
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            tokens += (choice.get("logprobs") or {}).get("content") or []
            finish_reason = choice.get("finish_reason") or finish_reason
            if delta := (choice.get("delta") or {}).get("content"):
                text += delta
                on_text(text)
    return {"choices": [{"message": {"content": text}, "logprobs": {"content": tokens},
                         "finish_reason": finish_reason}], "usage": usage}


def _data_url(jpeg: bytes) -> dict:
    return {"url": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")}


class _Refused(BackendError):
    """The server answered the request with an HTTP error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _error_text(response: httpx.Response) -> str:
    """The server's own words: vLLM puts them in ``{"error": {"message": …}}`` (older: ``{"message": …}``)."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300]
    return _error_text_of(payload)


def _error_text_of(payload: object) -> str:
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:300]
    return str(payload)[:300]
