"""A model backend that runs a Qwen2.5-VL-style checkpoint in-process with transformers.

It is what tests, training rollouts and machines without a vLLM server use. It renders the chat exactly as
vLLM would (the checkpoint's own chat template), keeps special tokens in the text so ``<tool_call>`` tags
survive, and enforces a regex constraint with xgrammar, the engine vLLM uses for structured outputs.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
import xgrammar as xgr
from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig, LogitsProcessor

from sportlens.agent.backends.base import BackendError, ChatMessage, Generation
from sportlens.agent.records import TokenLogprob
from sportlens.tools.frames import Frame

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class _TextSoFar:
    """A transformers streamer that hands ``on_text`` the text generated so far, special tokens kept, stop tokens not."""

    def __init__(self, tokenizer, stop_ids: set[int] | list[int], on_text: Callable[[str], None]) -> None:
        self._tokenizer, self._stop_ids, self._on_text = tokenizer, set(stop_ids), on_text
        self._ids: list[int] = []
        self._prompt_passed = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_passed:  # generate() puts the prompt first
            self._prompt_passed = True
            return
        new = [token for token in value.reshape(-1).tolist() if token not in self._stop_ids]
        if new:
            self._ids += new
            self._on_text(self._tokenizer.decode(self._ids, skip_special_tokens=False))

    def end(self) -> None:
        """generate() calls it when done; the text was handed on token by token already."""


class _RegexConstraint(LogitsProcessor):
    """Masks every token the grammar does not allow next; once the regex is complete only a stop token remains.

    One instance serves one ``generate`` call of batch size 1: it keeps the matcher's state between steps.
    """

    def __init__(self, grammar: xgr.CompiledGrammar) -> None:
        self._matcher = xgr.GrammarMatcher(grammar)
        self._bitmask = xgr.allocate_token_bitmask(1, grammar.tokenizer_info.vocab_size)
        self._started = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self._started:  # the first call sees only the prompt
            self._started = True
        elif not self._matcher.accept_token(int(input_ids[0, -1])):
            raise BackendError("the constrained decoder produced a token its grammar rejects")
        self._matcher.fill_next_token_bitmask(self._bitmask)
        backend = "cpu" if scores.device.type == "cpu" else "torch_native"  # torch_native needs no triton
        xgr.apply_token_bitmask_inplace(scores, self._bitmask.to(scores.device), backend=backend)
        return scores


class TransformersBackend:
    """Continues a multimodal chat with a local checkpoint (a directory of HF files, e.g. from make-demo-model).

    Args:
        model_dir: the checkpoint directory (config.json, safetensors, tokenizer, processor, chat template);
            a ``manifest.json`` beside them, if present, names the model.
        device: a torch device string; default "cuda" when available, else "cpu".
        dtype: "bfloat16", "float16" or "float32"; default bfloat16 on CUDA and float32 on the CPU.

    Loading costs what reading the weights costs; each ``generate`` runs one ``model.generate`` call.
    Calls are serialised by a lock: the model keeps per-call rope state, so one instance answers one call at a time.
    """

    def __init__(self, model_dir: Path, *, device: str | None = None, dtype: str | None = None) -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise BackendError(f"no model at {model_dir}: run `sportlens make-demo-model {model_dir}`")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
        if dtype not in _DTYPES:
            raise BackendError(f"unknown dtype {dtype!r}: use one of {', '.join(_DTYPES)}")
        try:
            self._processor = AutoProcessor.from_pretrained(model_dir)
            self._model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=_DTYPES[dtype])
            self._model.to(device).eval()
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise BackendError(f"cannot load the checkpoint at {model_dir}: {error}") from error
        manifest = model_dir / "manifest.json"
        name = json.loads(manifest.read_text()).get("name") if manifest.is_file() else None
        self.model_id: str = name or model_dir.resolve().name
        self._device = torch.device(device)
        self._tokenizer = self._processor.tokenizer
        self._stop_ids = stop_token_ids(self._model.generation_config, self._tokenizer)
        # Sampling is exactly what each call asks for, never the checkpoint's defaults (top_k, repetition penalty).
        pad_id = self._tokenizer.pad_token_id
        self._model.generation_config = GenerationConfig(
            eos_token_id=self._stop_ids, pad_token_id=self._stop_ids[0] if pad_id is None else pad_id
        )
        vocab_size = self._model.config.get_text_config().vocab_size
        tokenizer_info = xgr.TokenizerInfo.from_huggingface(
            self._tokenizer, vocab_size=vocab_size, stop_token_ids=self._stop_ids
        )
        self._compiler = xgr.GrammarCompiler(tokenizer_info)
        self._grammars: dict[str, xgr.CompiledGrammar] = {}
        self._lock = threading.Lock()

    def generate(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        constraint: str | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        """Greedy when temperature is 0, else plain temperature sampling (no top-k, top-p or repetition penalty).

        Logprobs are the log-softmax of the scores the token was chosen from (after the grammar mask and the
        temperature). The returned text keeps special tokens and drops the final stop token.
        """
        logits_processor = [_RegexConstraint(self._grammar(constraint))] if constraint is not None else []
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {}
        with self._lock, torch.inference_mode():
            inputs = self._encode(messages)
            prompt_length = inputs["input_ids"].shape[1]
            try:
                output = self._model.generate(
                    **inputs,
                    max_new_tokens=max_tokens,
                    logits_processor=logits_processor,
                    output_scores=True,
                    return_dict_in_generate=True,
                    streamer=_TextSoFar(self._tokenizer, self._stop_ids, on_text) if on_text else None,
                    **sampling,
                )
            except BackendError:
                raise
            except RuntimeError as error:  # e.g. out of memory
                raise BackendError(f"generation failed: {error}") from error
        tokens = output.sequences[0, prompt_length:].tolist()
        logprobs = [
            TokenLogprob(
                token=self._tokenizer.decode([token], skip_special_tokens=False),
                logprob=float(torch.log_softmax(step[0].float(), dim=-1)[token]),
            )
            for token, step in zip(tokens, output.scores)
        ]
        if tokens and tokens[-1] in self._stop_ids:
            tokens, logprobs = tokens[:-1], logprobs[:-1]
        elif constraint is not None:
            logger.warning("constrained generation hit max_tokens=%d before its grammar completed", max_tokens)
        return Generation(
            text=self._tokenizer.decode(tokens, skip_special_tokens=False),
            tokens_in=prompt_length,
            tokens_out=len(tokens),
            logprobs=logprobs,
        )

    def score_continuations(self, messages: list[ChatMessage], continuations: list[str]) -> list[float]:
        """The total log-probability the model gives each continuation text right after the generation prompt.

        Teacher-forced, raw (no temperature, no grammar), one forward pass per continuation. Special-token text
        in a continuation (``<tool_call>``, ``<|im_end|>``) is read as the special token.
        """
        scores = []
        with self._lock, torch.inference_mode():
            inputs = self._encode(messages)
            prompt_length = inputs["input_ids"].shape[1]
            for text in continuations:
                ids = self._tokenizer.encode(text, add_special_tokens=False, return_tensors="pt").to(self._device)
                if ids.shape[1] == 0:
                    raise BackendError("cannot score an empty continuation")
                extended = dict(inputs)
                extended["input_ids"] = torch.cat([inputs["input_ids"], ids], dim=1)
                extended["attention_mask"] = torch.ones_like(extended["input_ids"])
                if "mm_token_type_ids" in inputs:
                    extended["mm_token_type_ids"] = torch.cat(
                        [inputs["mm_token_type_ids"], torch.zeros_like(ids, dtype=inputs["mm_token_type_ids"].dtype)], 1
                    )
                logits = self._model(**extended).logits[0, prompt_length - 1 : -1].float()
                scores.append(float(torch.log_softmax(logits, -1).gather(1, ids[0, :, None]).sum()))
        return scores

    def close(self) -> None:
        """Drops the model so its memory can be reclaimed."""
        self._model = None
        self._grammars.clear()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _encode(self, messages: list[ChatMessage]) -> dict[str, torch.Tensor]:
        """The chat rendered by the checkpoint's template plus the generation prompt, with frames as images in order."""
        if self._model is None:
            raise BackendError("the backend is closed")
        chat, images = to_chat(messages)
        prompt = self._processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        inputs = self._processor(text=[prompt], images=images or None, return_tensors="pt")
        return {name: value.to(self._device) for name, value in inputs.items()}

    def _grammar(self, regex: str) -> xgr.CompiledGrammar:
        if regex not in self._grammars:
            try:
                self._grammars[regex] = self._compiler.compile_grammar(xgr.Grammar.from_regex(regex))
            except (RuntimeError, ValueError) as error:
                raise BackendError(f"cannot compile the constraint {regex!r}: {error}") from error
        return self._grammars[regex]


def to_chat(messages: list[ChatMessage]) -> tuple[list[dict], list[Image.Image]]:
    """The agent's messages as chat-template messages plus their frames as PIL images, in order."""
    chat, images = [], []
    for message in messages:
        content = []
        for part in message.parts:
            if isinstance(part, Frame):
                content.append({"type": "image"})
                images.append(part.to_pil())
            else:
                content.append({"type": "text", "text": part})
        chat.append({"role": message.role, "content": content})
    return chat, images


def stop_token_ids(generation_config: GenerationConfig, tokenizer) -> list[int]:
    """The checkpoint's end-of-turn ids (``<|im_end|>`` first for Qwen), falling back to the tokenizer's eos."""
    eos = generation_config.eos_token_id
    ids = list(eos) if isinstance(eos, list) else [eos] if eos is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.insert(0, tokenizer.eos_token_id)
    if not ids:
        raise BackendError("the checkpoint names no end-of-turn token (eos_token_id)")
    return ids
