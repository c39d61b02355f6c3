"""Server-sent events: ``data: <json>\\n\\n`` per chunk, ``data: [DONE]\\n\\n`` at the end, an
error after the headers as ``data: {"error": {...}}``; the body iterator is always closed (so a
dropped client cancels its generation at the next token)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Send

__all__ = ["EventStream", "event"]


def event(data: Any) -> str:
    """One SSE event of ``data`` (a JSON-able object, or the literal ``[DONE]``)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False,
                                                         separators=(",", ":"))
    return f"data: {text}\n\n"


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response whose iterator is closed however it ends."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[str]) -> None:
        super().__init__(events, headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})
        self._events = events

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            await self._events.aclose()  # type: ignore[attr-defined]
