"""One server's state: the config, the Engine (loaded once), its Runner and adapter registry."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .adapters import AdapterRegistry
from .config import ServerConfig
from .errors import APIError
from .runner import Runner

log = logging.getLogger("llamart.server")

__all__ = ["ServerState"]

AdapterHook = Callable[[str], Awaitable[None]]


class ServerState:
    """What the routes share. ``ready`` is False until :meth:`load` has finished."""

    def __init__(self, config: ServerConfig, engine: Any = None) -> None:
        self.config = config
        self.engine = engine
        self.runner: Runner | None = None
        self.registry = AdapterRegistry(config, self._forget)
        self.created = int(time.time())
        self.load_error: str | None = None
        # called with the adapter name before a request using it runs (Ray: serve.multiplexed)
        self.adapter_hook: AdapterHook | None = None
        self._loaded = threading.Event()

    @property
    def ready(self) -> bool:
        return self._loaded.is_set()

    def load(self) -> None:
        """Load the model and check the adapters (blocking; errors are kept for /health)."""
        cfg = self.config
        try:
            self.registry.check_files()
            started = time.perf_counter()
            self.engine = self._load_engine(cfg.parallel, self.engine)
            self.runner = Runner(self.engine, cfg.parallel, cfg.max_queue)
            log.info("loaded %s as %r in %.2f s (%d slot(s), %s adapters: %s)", cfg.model,
                     cfg.model_name, time.perf_counter() - started, self.runner.slots,
                     len(cfg.adapters), ", ".join(a.name for a in cfg.adapters) or "none")
        except Exception as e:
            self.load_error = str(e)
            log.error("could not load %s: %s", cfg.model, e)
            raise
        self._loaded.set()

    def _load_engine(self, n_parallel: int, engine: Any = None) -> Any:
        from ..engine import Engine

        cfg = self.config
        engine = engine or Engine(cfg.backend)
        engine.load_model(cfg.model, n_ctx=cfg.n_ctx, n_batch=cfg.n_batch,
                          n_threads=cfg.n_threads, n_parallel=n_parallel)
        return engine

    def require(self) -> Runner:
        """The runner, or APIError 503 while the model loads."""
        if self.runner is None or not self.ready:
            why = f"model failed to load: {self.load_error}" if self.load_error else \
                "the model is loading"
            raise APIError(503, why, code="model_not_ready", headers={"Retry-After": "1"})
        return self.runner

    def _forget(self, path: str) -> None:
        """An adapter no request uses any more was unloaded or evicted. Today's engine drops it
        at the next request's adapter change; nothing else holds it."""
        log.info("adapter %s released", path)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
        if self.engine is not None:
            self.engine.dispose()
