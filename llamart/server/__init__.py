"""``llamart serve``: an OpenAI-compatible HTTP server over one Engine (optional extra
``llamart[server]``: FastAPI + uvicorn).

:func:`create_app` builds the FastAPI app from a :class:`ServerConfig`; :mod:`.runner` is the
one module that touches the Engine. Nothing here imports FastAPI until ``create_app`` is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import AdapterSpec, ServerConfig, parse_lora_flag

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["AdapterSpec", "ServerConfig", "create_app", "parse_lora_flag"]


def create_app(config: ServerConfig, **kwargs: Any) -> FastAPI:
    """The FastAPI app serving ``config`` (see :func:`llamart.server.app.create_app`)."""
    from .app import create_app as _create

    return _create(config, **kwargs)
