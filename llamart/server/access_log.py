"""One log line per request: method, path, model, status, tokens and time (logger
``llamart.server``). Handlers fill ``request.state.log`` (model and usage); the line is written
when the last byte of the response is sent (after the stream, for streams)."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("llamart.server")

__all__ = ["AccessLog", "JSONBodies"]


class JSONBodies:
    """ASGI middleware: a POST body is JSON whatever its Content-Type says (``curl -d`` sends
    form encoding; llama-server and OpenAI read JSON anyway)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        await self.app(scope, receive, send)


class AccessLog:
    """ASGI middleware writing the access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        info: dict[str, Any] = {}
        scope.setdefault("state", {})["log"] = info
        status = [0]
        logged = [False]

        def write(outcome: str = "") -> None:
            if logged[0]:
                return
            logged[0] = True
            usage = info.get("usage") or {}
            parts = [f'{scope["method"]} {scope["path"]}', str(status[0] or 500)]
            if "model" in info:
                parts.append(f'model={info["model"]}')
            if usage:
                parts.append(f'prompt={usage.get("prompt_tokens", 0)} '
                             f'completion={usage.get("completion_tokens", 0)} '
                             f'cached={usage.get("cached_tokens", 0)}')
            if scope["state"].get("error"):
                parts.append(f'error="{scope["state"]["error"]}"')
            if info.get("finish_reason"):
                parts.append(f'finish={info["finish_reason"]}')
            if outcome:
                parts.append(outcome)
            parts.append(f"{time.perf_counter() - started:.3f}s")
            log.info(" ".join(parts))

        async def logging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                write()

        try:
            await self.app(scope, receive, logging_send)
        except BaseException:
            write("client gone" if status[0] else "failed")
            raise
        write("client gone")
