"""What the converter needs to know about a base GGUF model, read with gguf-py's GGUFReader."""

from __future__ import annotations

import os
from dataclasses import dataclass

import gguf

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
        raise ConvertError(f"architecture '{self.arch}' is unknown to gguf-py "
                           f"{gguf.__version__ if hasattr(gguf, '__version__') else ''}".rstrip(),
                           self.path)


def _scalar(reader: gguf.GGUFReader, key: str) -> object:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def read_base(path: str | os.PathLike[str]) -> BaseModel:
    """Read a base model's header; ConvertError naming the file for anything unusable."""
    spath = os.fspath(path)
    if not os.path.isfile(spath):
        raise ConvertError("no such base model file", spath)
    try:
        reader = gguf.GGUFReader(spath)
        arch = _scalar(reader, "general.architecture")
        gtype = _scalar(reader, "general.type")
        shapes = {t.name: tuple(int(d) for d in reversed(t.shape.tolist()))
                  for t in reader.tensors}
        values = {k: _scalar(reader, k.format(arch=arch)) for k in (
            gguf.Keys.LLM.BLOCK_COUNT, gguf.Keys.Attention.HEAD_COUNT,
            gguf.Keys.Attention.HEAD_COUNT_KV)}
    except ConvertError:
        raise
    except Exception as e:  # gguf-py raises ValueError, struct errors, IndexError...
        raise ConvertError(f"not a readable GGUF model ({type(e).__name__}: {e})", spath) from e
    if not isinstance(arch, str):
        raise ConvertError("has no general.architecture", spath)
    if gtype == "adapter":
        raise ConvertError("is an adapter, not a base model", spath)
    block_count, n_head, n_head_kv = values.values()
    if not isinstance(block_count, int):
        raise ConvertError(f"has no {arch}.block_count", spath)
    n_head = n_head if isinstance(n_head, int) else None  # per-layer arrays: not handled here
    n_head_kv = n_head_kv if isinstance(n_head_kv, int) else n_head
    return BaseModel(spath, arch, block_count, n_head, n_head_kv, shapes)
