"""OpenAI request bodies (pydantic) and their translation to llamart's sampling options.

Fields OpenAI clients send that llamart cannot honour are refused with a 400 naming the field
(``n`` > 1, non-zero presence/frequency penalties, logprobs, tools, ...), never ignored.
Absent sampling fields take llamart's defaults (``GenerationParams``: temperature 0.8,
top_p 0.95, top_k 40, min_p 0.05, repeat_penalty 1.1, as llama-cpp-python's server).
``top_k``, ``min_p``, ``repeat_penalty`` and ``repeat_last_n`` are accepted as extensions.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import APIError

log = logging.getLogger("llamart.server")

__all__ = ["ChatRequest", "CompletionRequest", "EmbeddingRequest", "LoadAdapterRequest",
           "LoraRef", "UnloadAdapterRequest", "chat_messages", "completion_prompt",
           "embedding_inputs", "sampling_options"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown fields are logged and ignored (as vLLM)


class LoraRef(BaseModel):
    """One entry of the body's ``lora`` list: an adapter by name, at a scale."""

    name: str
    scale: float | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(_Body):
    model: str
    max_tokens: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logprobs: Any = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # llama-cpp-python's extensions
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, gt=0.0)
    repeat_last_n: int | None = Field(None, ge=-1)
    lora: list[LoraRef] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=0)
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    top_logprobs: int | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class LoadAdapterRequest(_Body):
    lora_name: str = Field(min_length=1)
    lora_path: str = Field(min_length=1)
    scale: float = 1.0


class UnloadAdapterRequest(_Body):
    lora_name: str = Field(min_length=1)
    lora_int_id: int | None = None


def _refuse(field: str, why: str) -> APIError:
    return APIError(400, f"{field}: {why}", param=field, code="unsupported_parameter")


def sampling_options(req: _Sampling, n_ctx: int, default_max: int | None) -> dict[str, Any]:
    """The Engine keywords of a chat or completion request (APIError 400 for what llamart
    refuses). ``default_max`` is the max_tokens when the request gives none (None: the
    context's room)."""
    if req.model_extra:
        log.info("ignored unknown fields: %s", ", ".join(sorted(req.model_extra)))
    if req.n != 1:
        raise _refuse("n", "only n=1 is supported (one choice per request)")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            raise _refuse(name, "not supported; use repeat_penalty (llama.cpp's) instead")
    if req.logprobs not in (None, False, 0):
        raise _refuse("logprobs", "log probabilities are not supported")
    if req.logit_bias:
        raise _refuse("logit_bias", "not supported")
    max_tokens = getattr(req, "max_completion_tokens", None) or req.max_tokens
    if max_tokens is None:
        max_tokens = default_max if default_max is not None else n_ctx
    opts: dict[str, Any] = {"max_tokens": max_tokens}
    for name in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repeat_last_n",
                 "seed"):
        value = getattr(req, name)
        if value is not None:
            opts[name] = value
    if req.stop:
        opts["stop"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    return opts


def chat_messages(req: ChatRequest) -> list[dict[str, str]]:
    """The messages as the chat template takes them: text parts joined, ``developer`` read as
    ``system``; images, audio and tool calls refused."""
    if req.tools:
        raise _refuse("tools", "tool calling is not supported")
    if req.top_logprobs:
        raise _refuse("top_logprobs", "log probabilities are not supported")
    out = []
    for i, m in enumerate(req.messages):
        content = m.content
        if isinstance(content, list):
            texts = []
            for part in content:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise _refuse(f"messages.{i}.content",
                                  f"only text parts are supported, got {part.get('type')!r}")
                texts.append(part["text"])
            content = "".join(texts)
        role = "system" if m.role == "developer" else m.role
        out.append({"role": role, "content": content or ""})
    return out


def completion_prompt(req: CompletionRequest) -> str | list[int]:
    """The one prompt of a completion request (a string or token ids)."""
    if req.echo:
        raise _refuse("echo", "not supported")
    if req.suffix:
        raise _refuse("suffix", "not supported")
    if req.best_of not in (None, 1):
        raise _refuse("best_of", "only best_of=1 is supported")
    p = req.prompt
    if isinstance(p, list) and p and isinstance(p[0], (str, list)):
        if len(p) != 1:
            raise _refuse("prompt", "one prompt per request (a list of one is accepted)")
        p = p[0]
    if isinstance(p, list) and not p:
        raise APIError(400, "prompt: empty", param="prompt")
    return p  # type: ignore[return-value]


def embedding_inputs(req: EmbeddingRequest) -> list[str]:
    """The texts of an embeddings request (token-id inputs refused)."""
    if req.dimensions is not None:
        raise _refuse("dimensions", "not supported (vectors have the model's n_embd)")
    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts or not all(isinstance(t, str) for t in texts):
        raise APIError(400, "input: a string or a non-empty list of strings", param="input")
    if any(not t for t in texts):
        raise APIError(400, "input: empty strings cannot be embedded", param="input")
    return texts  # type: ignore[return-value]
