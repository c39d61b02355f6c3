"""The OpenAI routes: health, models, chat completions, completions, embeddings and (with
``--allow-adapter-loading``) adapter loading. Each handler validates, selects the adapter set,
and hands the engine work to the Runner; errors go through :mod:`.errors`."""

from __future__ import annotations

import array
import asyncio
import base64
import hmac
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..errors import GrammarError
from .errors import APIError, from_exception
from .runner import Stream
from .schemas import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    LoadAdapterRequest,
    UnloadAdapterRequest,
    chat_messages,
    completion_prompt,
    embedding_inputs,
    sampling_options,
)
from .sse import EventStream, event
from .state import ServerState

__all__ = ["adapter_router", "api_router", "health_router"]

COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's (and llama-cpp-python's) default for /v1/completions
_FINISH = {"stop": "stop", "length": "length", "context": "length", "cancelled": "stop"}


def get_state(request: Request) -> ServerState:
    return request.app.state.llamart


StateDep = Annotated[ServerState, Depends(get_state)]


def check_key(request: Request, state: StateDep) -> None:
    """401 unless the request carries ``Authorization: Bearer <--api-key>`` (when set)."""
    key = state.config.api_key
    if key is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                             key.encode()):
        raise APIError(401, "Incorrect API key provided" if given else
                       "Missing API key (Authorization: Bearer <key>)", code="invalid_api_key")


health_router = APIRouter()
api_router = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])
adapter_router = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])


@health_router.get("/health")
async def health(state: StateDep) -> dict[str, Any]:
    """200 once the model is loaded (with the queue's state); 503 before."""
    runner = state.require()
    return {"status": "ok", "model": state.config.model_name, "slots": runner.slots,
            "running": runner.running, "queued": runner.active - runner.running,
            "max_in_flight": runner.limit, "parallel_engine": runner.concurrent}


def _model_list(state: ServerState) -> list[dict[str, Any]]:
    base = state.config.model_name
    data = [{"id": base, "object": "model", "created": state.created, "owned_by": "llamart",
             "root": base, "parent": None}]
    data += [{"id": a.name, "object": "model", "created": state.created, "owned_by": "llamart",
              "root": a.path, "parent": base} for a in state.registry.specs()]
    return data


@api_router.get("/models")
async def models(state: StateDep) -> dict[str, Any]:
    """The base model and each adapter (``parent`` = the base), as vLLM lists them."""
    state.require()
    return {"object": "list", "data": _model_list(state)}


@api_router.get("/models/{model_id}")
async def model(model_id: str, state: StateDep) -> dict[str, Any]:
    """One model of the list (404 if unknown)."""
    state.require()
    for m in _model_list(state):
        if m["id"] == model_id:
            return m
    raise APIError(404, f"The model '{model_id}' does not exist", param="model",
                   code="model_not_found")


def _usage(u: dict[str, int]) -> dict[str, Any]:
    p, c = u.get("prompt_tokens", 0), u.get("completion_tokens", 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": u.get("cached_tokens", 0)}}


async def _start(request: Request, state: ServerState, model: str, lora: Any,
                 begin: Callable[..., Any], stack: ExitStack, param: str) -> Stream:
    """Admit the request, hold its adapters and start its generation."""
    runner = state.require()
    request.state.log["model"] = model
    sel = state.registry.select(model, lora)
    stack.enter_context(state.registry.lease(sel.names))  # before Ray's hold: never evicted
    if state.adapter_hook is not None and model in sel.names:
        await state.adapter_hook(model)
    try:
        stream = await runner.start(begin, sel.loras)
    except Exception as e:
        raise from_exception(e, "response_format" if isinstance(e, GrammarError) else param) \
            from e
    stack.callback(stream.close)
    return stream


async def _close_when_gone(request: Request, stream: Stream) -> None:
    """Close ``stream`` if the client disconnects before its (non-streamed) reply is ready."""
    while not await request.is_disconnected():
        await asyncio.sleep(0.25)
    stream.close()


async def _generate(request: Request, state: ServerState, req: Any, begin: Callable[..., Any],
                    kind: str) -> Any:
    chat = kind == "chat"
    stack = ExitStack()
    try:
        stream = await _start(request, state, req.model, req.lora, begin, stack,
                              "messages" if chat else "prompt")
    except BaseException:
        stack.close()
        raise
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    log = request.state.log
    head = {"id": ident, "object": "chat.completion" if chat else "text_completion",
            "created": created, "model": req.model}

    def choice(text: str | None, finish: str | None, delta: bool) -> dict[str, Any]:
        if not chat:
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        if delta:
            return {"index": 0, "delta": {} if text is None else {"content": text},
                    "logprobs": None, "finish_reason": finish}
        return {"index": 0, "message": {"role": "assistant", "content": text},
                "logprobs": None, "finish_reason": finish}

    if not req.stream:
        with stack:
            watcher = asyncio.create_task(_close_when_gone(request, stream))
            try:
                text = await stream.text()
            except Exception as e:
                raise from_exception(e) from e
            finally:
                watcher.cancel()
            log.update(usage=stream.usage, finish_reason=stream.finish_reason)
            return {**head, "choices": [choice(text, _FINISH.get(stream.finish_reason or ""),
                                               False)],
                    "usage": _usage(stream.usage)}

    chunk_head = dict(head, object="chat.completion.chunk" if chat else "text_completion")
    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    async def events() -> AsyncIterator[str]:
        with stack:
            try:
                if chat:
                    first = choice("", None, True)
                    first["delta"] = {"role": "assistant", "content": ""}
                    yield event({**chunk_head, "choices": [first]})
                async for text in stream:
                    yield event({**chunk_head, "choices": [choice(text, None, True)]})
            except Exception as e:  # after the headers: an error event
                yield event(from_exception(e).body())
                return
            finally:  # also when the client went away: the tokens so far
                log.update(usage=stream.usage, finish_reason=stream.finish_reason or "cancelled")
            last = choice(None if chat else "", _FINISH.get(stream.finish_reason or "", "stop"),
                          True)
            yield event({**chunk_head, "choices": [last]})
            if include_usage:
                yield event({**chunk_head, "choices": [], "usage": _usage(stream.usage)})
            yield event("[DONE]")

    return EventStream(events(), stack.close)


@api_router.post("/chat/completions")
async def chat_completions(req: ChatRequest, request: Request,
                           state: StateDep) -> Any:
    """OpenAI's chat completions, streamed or not."""
    request.state.log["model"] = req.model
    state.require()
    messages = chat_messages(req)
    opts = sampling_options(req, state.config.n_ctx, None)
    engine, fmt = state.engine, req.response_format

    def begin(**adapters: Any) -> Any:
        return engine.chat(messages, stream=True, response_format=fmt, **opts, **adapters)

    return await _generate(request, state, req, begin, "chat")


@api_router.post("/completions")
async def completions(req: CompletionRequest, request: Request,
                      state: StateDep) -> Any:
    """OpenAI's (legacy) text completions, streamed or not."""
    request.state.log["model"] = req.model
    state.require()
    prompt = completion_prompt(req)
    opts = sampling_options(req, state.config.n_ctx, COMPLETION_DEFAULT_MAX_TOKENS)
    engine = state.engine

    def begin(**adapters: Any) -> Any:
        return engine.generate(prompt, **opts, **adapters)

    return await _generate(request, state, req, begin, "completion")


def _encode(vector: Any, fmt: str) -> Any:
    if fmt == "float":
        return list(vector)
    arr = array.array("f", vector)
    if sys.byteorder == "big":
        arr.byteswap()
    return base64.b64encode(arr.tobytes()).decode("ascii")


@api_router.post("/embeddings")
async def embeddings(req: EmbeddingRequest, request: Request,
                     state: StateDep) -> dict[str, Any]:
    """One vector per input text (``encoding_format`` float or base64: little-endian f32)."""
    runner = state.require()
    request.state.log["model"] = req.model
    texts = embedding_inputs(req)
    sel = state.registry.select(req.model, None)
    with state.registry.lease(sel.names):
        if state.adapter_hook is not None and req.model in sel.names:
            await state.adapter_hook(req.model)
        try:
            vectors, n_tokens = await runner.embed(texts, sel.loras)
        except Exception as e:
            raise from_exception(e, "input") from e
    request.state.log["usage"] = {"prompt_tokens": n_tokens}
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, req.encoding_format)}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": req.model,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}


@adapter_router.post("/load_lora_adapter")
async def load_lora_adapter(req: LoadAdapterRequest,
                            state: StateDep) -> JSONResponse:
    """vLLM's runtime loading: a file inside the allowed folder, checked against the base."""
    state.require()
    try:
        spec = await asyncio.to_thread(state.registry.load, req.lora_name, req.lora_path,
                                       req.scale)
    except Exception as e:
        raise from_exception(e, "lora_path") from e
    return JSONResponse({"object": "lora_adapter", "name": spec.name, "path": spec.path,
                         "scale": spec.scale, "status": "loaded"})


@adapter_router.post("/unload_lora_adapter")
async def unload_lora_adapter(req: UnloadAdapterRequest,
                              state: StateDep) -> JSONResponse:
    """Remove an adapter from the API (requests running with it finish first)."""
    state.require()
    state.registry.unload(req.lora_name)
    return JSONResponse({"object": "lora_adapter", "name": req.lora_name,
                         "status": "unloaded"})
