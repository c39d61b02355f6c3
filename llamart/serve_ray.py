"""llamart on Ray Serve: one Engine per replica behind the same OpenAI routes as ``llamart serve``.

Adapters are Ray's multiplexed models: a request for adapter NAME carries the header
``serve_multiplexed_model_id: NAME`` (and ``model: NAME``), Ray routes it to a replica that
already holds NAME, and the replica's ``@serve.multiplexed`` loader (LRU,
``max_num_models_per_replica``) holds it there. Base-model requests carry no id and spread
over all replicas. An adapter Ray evicts while a request still runs with it is released only
when that request ends (``AdapterRegistry.retire``, idempotent: Ray may call ``__del__``
twice).

``serve run docs/serve_ray.yaml`` (``pip install 'llamart[ray]'``) or, in Python,
``serve.run(build_app({"model": ..., "lora": ["pirate=pirate.gguf:0.75"], ...}))``.
Each response names its replica in the ``x-llamart-replica`` header.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ray import serve

from .server.adapters import AdapterRegistry
from .server.config import DEFAULT_PARALLEL, AdapterSpec, ServerConfig, parse_lora_flag

log = logging.getLogger("llamart.server")

__all__ = ["HeldAdapter", "build_app", "config_from_args", "deployment_class"]

REPLICA_HEADER = "x-llamart-replica"


class HeldAdapter:
    """A replica's hold on one adapter (Ray's multiplexed "model"): evicting it releases the
    adapter once no running request uses it."""

    def __init__(self, name: str, registry: AdapterRegistry) -> None:
        self.name = name
        self._registry = registry
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._registry.retire(self.name)

    def __del__(self) -> None:  # Ray's eviction
        self.release()


def config_from_args(args: dict[str, Any]) -> ServerConfig:
    """A ServerConfig from ``serve run``'s ``args`` (the CLI's names: model, lora (list of
    NAME=PATH[:SCALE]), alias, api_key, n_ctx, n_batch, n_threads, parallel, max_queue,
    max_adapters); relative paths are made absolute here."""
    keys = {"alias", "api_key", "n_ctx", "n_batch", "n_threads", "parallel", "max_queue",
            "max_adapters", "backend"}
    unknown = set(args) - keys - {"model", "lora", "num_replicas", "num_cpus"}
    if unknown:
        raise ValueError(f"unknown llamart serve_ray args: {sorted(unknown)}")
    adapters = tuple(parse_lora_flag(t) for t in args.get("lora") or ())
    # relative paths are the caller's (serve run's working folder), not a Ray worker's
    adapters = tuple(AdapterSpec(a.name, os.path.abspath(a.path), a.scale) for a in adapters)
    return ServerConfig(model=os.path.abspath(str(args["model"])), adapters=adapters,
                        **{k: v for k, v in args.items() if k in keys})


def deployment_class(max_adapters: int) -> type:
    """The deployment class, holding up to ``max_adapters`` adapters per replica."""

    @serve.ingress()
    class LlamartDeployment:
        """One replica: an Engine, its adapters (multiplexed) and the OpenAI app."""

        def __init__(self, config: ServerConfig) -> None:
            from .server.state import ServerState

            self.config = config
            self.state = ServerState(config)
            self.state.load()
            self.state.adapter_hook = self._hold
            self.replica = serve.get_replica_context().replica_id.unique_id

        @serve.multiplexed(max_num_models_per_replica=max_adapters)
        async def get_adapter(self, name: str) -> HeldAdapter:
            if self.state.registry.get(name) is None:
                raise KeyError(name)  # not reached: routes check names first
            log.info("replica %s holds adapter %s", self.replica, name)
            return HeldAdapter(name, self.state.registry)

        async def _hold(self, name: str) -> None:
            await self.get_adapter(name)

        def __serve_build_asgi_app__(self) -> Any:
            from .server.app import create_app

            app = create_app(self.config, state=self.state, load="none")
            replica = self.replica

            @app.middleware("http")
            async def name_replica(request: Any, call_next: Any) -> Any:
                response = await call_next(request)
                response.headers[REPLICA_HEADER] = replica
                return response

            return app

    return LlamartDeployment


def build_app(args: dict[str, Any]) -> Any:
    """The Ray Serve application (``serve run llamart.serve_ray:build_app model=...`` or a
    config file's ``import_path``). ``num_replicas`` (default 1) and ``num_cpus`` per replica
    (default: its ``n_threads``, else 1) size it; ``max_ongoing_requests`` is its slots."""
    config = config_from_args(args)
    num_cpus = args.get("num_cpus") or config.n_threads or 1
    cls = deployment_class(config.max_adapters)
    deployment = serve.deployment(
        cls, name="llamart", num_replicas=int(args.get("num_replicas", 1)),
        max_ongoing_requests=config.parallel or DEFAULT_PARALLEL,
        ray_actor_options={"num_cpus": num_cpus})
    return deployment.bind(config)
