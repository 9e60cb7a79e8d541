"""The interface every model backend implements, and the chat message it consumes."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from sportlens.agent.records import TokenLogprob
from sportlens.tools.frames import Frame


@dataclass
class ChatMessage:
    """One chat turn; parts are text and frames in the order the model sees them."""

    role: Literal["system", "user", "assistant"]
    parts: list[str | Frame]

    def text(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))


@dataclass
class Generation:
    """What one model call returned: the text (special tokens kept), token counts and per-token logprobs."""

    text: str
    tokens_in: int
    tokens_out: int
    logprobs: list[TokenLogprob] = field(default_factory=list)


class BackendError(RuntimeError):
    """A model backend could not answer (unreachable, refused the request, or returned something unusable)."""


class ModelBackend(Protocol):
    """Anything that continues a multimodal chat. ``constraint`` is a regular expression the output must match.

    ``on_text``, when given, is called with the text written so far each time it grows, by a backend that
    streams (both of ours; after a retry the HTTP one starts the text again), so that the agent can start a
    tool while the model still writes; a backend that generates in one piece never calls it. It runs on the
    backend's thread and must return at once.
    """

    model_id: str

    def generate(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        constraint: str | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation: ...

    def score_continuations(self, messages: list[ChatMessage], continuations: list[str]) -> list[float]:
        """The total log-probability the model gives each continuation text right after the chat's generation prompt.

        Teacher-forced and raw (no temperature, no constraint). The loop scores a closed question's options with
        it (``AgentSettings.score_options``), the input of conformal sets. A backend that is no language model
        (the benchmarks' oracle) cannot score: it raises ``BackendError`` saying so.
        """
        ...

    def close(self) -> None: ...
