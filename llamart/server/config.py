"""What a server serves: the model, its named adapters, limits and access (no FastAPI here)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

__all__ = ["AdapterSpec", "DEFAULT_PARALLEL", "ServerConfig", "parse_lora_flag"]

DEFAULT_PARALLEL = 4  # llama-server's automatic slot count


@dataclass(frozen=True)
class AdapterSpec:
    """A LoRA adapter served as its own model name (``scale`` is its default scale)."""

    name: str
    path: str
    scale: float = 1.0


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``llamart serve`` takes; ``model`` is a GGUF path."""

    model: str
    adapters: tuple[AdapterSpec, ...] = ()
    alias: str | None = None
    api_key: str | None = None
    n_ctx: int = 2048
    n_batch: int = 512
    n_threads: int | None = None
    parallel: int = DEFAULT_PARALLEL
    max_queue: int = 64
    adapter_dir: str | None = None  # --allow-adapter-loading DIR: runtime (un)loading, inside DIR
    max_adapters: int = 8  # adapters a Ray replica holds at once (serve.multiplexed)
    backend: str | None = None

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {self.parallel}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be 0 or more, got {self.max_queue}")
        names = [a.name for a in self.adapters]
        if len(set(names)) != len(names):
            raise ValueError(f"adapter names must be unique: {names}")
        if self.model_name in names:
            raise ValueError(f"adapter name {self.model_name!r} is the base model's name")

    @property
    def model_name(self) -> str:
        """The base model's name in the API: the alias, else the file name without .gguf."""
        if self.alias:
            return self.alias
        stem = os.path.basename(self.model)
        return stem[:-5] if stem.lower().endswith(".gguf") else stem


def parse_lora_flag(text: str) -> AdapterSpec:
    """``NAME=PATH[:SCALE]`` -> AdapterSpec (ValueError naming the problem)."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"--lora takes NAME=PATH[:SCALE], got {text!r}")
    path, scale = rest, 1.0
    head, colon, tail = rest.rpartition(":")
    if colon and head:
        try:
            scale = float(tail)
            path = head
        except ValueError:
            pass  # a colon inside the path
    if not math.isfinite(scale):
        raise ValueError(f"--lora {name}: scale must be finite, got {scale}")
    return AdapterSpec(name, path, scale)
