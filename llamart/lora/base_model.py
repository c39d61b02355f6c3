"""What the converter needs to know about a base GGUF model (architecture, heads, shapes)."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import gguf

from .. import gguf as llamart_gguf
from .peft_config import ConvertError


@dataclass(frozen=True)
class BaseModel:
    """A base model's architecture, head counts and tensor shapes (numpy order: (n_out, n_in))."""

    path: str
    arch: str
    block_count: int
    n_head: int | None
    n_head_kv: int | None
    shapes: dict[str, tuple[int, ...]]

    def model_arch(self) -> gguf.MODEL_ARCH:
        """gguf-py's enum member for ``arch`` (ConvertError when gguf-py does not know it)."""
        for member, name in gguf.MODEL_ARCH_NAMES.items():
            if name == self.arch:
                return member
        raise ConvertError(f"architecture '{self.arch}' is unknown to gguf-py's tensor map",
                           self.path)


def read_base(path: str | os.PathLike[str]) -> BaseModel:
    """Read a base model's header; ConvertError naming the file for anything unusable.

    llamart's own header reader, not gguf-py's GGUFReader: the same facts, but GGUFReader
    takes ~12 s over SmolLM2's 49,152-token vocabulary where this takes ~0.1 s.
    """
    spath = os.fspath(path)
    if not os.path.isfile(spath):
        raise ConvertError("no such base model file", spath)
    try:
        h = llamart_gguf.read_header(spath)
    except llamart_gguf.GGUFError as e:
        raise ConvertError(f"not a readable GGUF model ({e.reason})", spath) from e
    except (ValueError, OverflowError, EOFError, struct.error) as e:
        raise ConvertError(f"not a readable GGUF model ({e})", spath) from e
    arch = h.kv.get("general.architecture")
    if not isinstance(arch, str):
        raise ConvertError("has no general.architecture", spath)
    if h.kv.get("general.type") == "adapter":
        raise ConvertError("is an adapter, not a base model", spath)
    block_count, n_head, n_head_kv = (h.kv.get(k.format(arch=arch)) for k in (
        gguf.Keys.LLM.BLOCK_COUNT, gguf.Keys.Attention.HEAD_COUNT,
        gguf.Keys.Attention.HEAD_COUNT_KV))
    if not isinstance(block_count, int):
        raise ConvertError(f"has no {arch}.block_count", spath)
    n_head = n_head if isinstance(n_head, int) else None  # per-layer arrays: not handled here
    n_head_kv = n_head_kv if isinstance(n_head_kv, int) else n_head
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape)) for t in h.tensors}
    return BaseModel(spath, arch, block_count, n_head, n_head_kv, shapes)
