"""The FastAPI app factory: routes, error handlers, access log, and the model's loading."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Literal

from fastapi import FastAPI

from .. import __version__
from .access_log import AccessLog, JSONBodies
from .config import ServerConfig
from .errors import install_error_handlers
from .routes import adapter_router, api_router, health_router
from .state import ServerState

log = logging.getLogger("llamart.server")

__all__ = ["create_app"]


def create_app(config: ServerConfig, *, state: ServerState | None = None,
               load: Literal["background", "startup", "none"] = "background",
               on_load_error: Callable[[], None] | None = None) -> FastAPI:
    """The OpenAI-compatible app for ``config``.

    ``load``: "background" starts loading the model when the app starts and serves 503 until
    it is loaded (llama-server's behaviour); "startup" loads before the app serves; "none"
    leaves it to the caller (``app.state.llamart.load()``; Ray's replicas load in their
    constructor). ``on_load_error`` is called if a background load fails (the error stays in
    /health). The engine is disposed when the app shuts down.
    """
    st = state if state is not None else ServerState(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if load == "startup":
            st.load()
        elif load == "background":
            threading.Thread(target=_load_quietly, args=(st, on_load_error), name="llamart-load",
                             daemon=True).start()
        try:
            yield
        finally:
            st.close()

    app = FastAPI(title="llamart", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.llamart = st
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(api_router)
    if config.adapter_dir is not None:
        app.include_router(adapter_router)
    app.add_middleware(JSONBodies)
    app.add_middleware(AccessLog)
    return app


def _load_quietly(state: ServerState, on_error: Callable[[], None] | None) -> None:
    try:
        state.load()
    except Exception:  # kept in state.load_error: /health reports it
        if on_error is not None:
            on_error()
