"""Server-sent events: ``data: <json>\\n\\n`` per chunk, ``data: [DONE]\\n\\n`` at the end, an
error after the headers as ``data: {"error": {...}}``; the body iterator is always closed (so a
dropped client cancels its generation at the next token)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
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
    """A ``text/event-stream`` response whose iterator is closed however it ends, and
    ``on_close`` called after (also when the iterator never started)."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(events, headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})
        self._events = events
        self._on_close = on_close

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            try:
                await self._events.aclose()  # type: ignore[attr-defined]
            finally:
                self._on_close()
