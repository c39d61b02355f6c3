"""What reading a GGUF file gives: its header (metadata and tensor infos), and GGUFError.

Big metadata arrays (tokenizer vocabularies, merges, scores) are kept as read, in a
:class:`LazyArray`, and made into Python lists only when someone looks at them:
``GGUFHeader.kv`` decodes all of them on first use (a ``functools.cached_property``),
``GGUFHeader.value(key)`` only the one asked for, and checks that need just a length or the
raw bytes read ``GGUFHeader.raw_kv``.
"""

from __future__ import annotations

import array
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple, Protocol

from .spec import BOOL, GGML_MAX_DIMS, GGML_TYPES, GGUF_DEFAULT_ALIGNMENT, STRING


class GGUFError(ValueError):
    """A GGUF file is malformed or does not fit its use; ``reason`` says why."""

    def __init__(self, reason: str, path: str | os.PathLike[str] | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {reason}" if self.path is not None else reason)


class TensorInfo(NamedTuple):
    """One tensor's header entry.  ``shape`` is in ggml ``ne`` order (innermost first) and
    ``offset`` is the absolute position of its data in the file.  (Immutable; a NamedTuple
    because a large model has hundreds and each header read makes them all.)"""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int

    @property
    def ne(self) -> tuple[int, int, int, int]:
        """The shape padded with 1s to four dimensions, as ggml stores it."""
        s = self.shape + (1,) * (GGML_MAX_DIMS - len(self.shape))
        return (s[0], s[1], s[2], s[3])

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def type_name(self) -> str:
        return GGML_TYPES[self.ggml_type][0]


class PackedStrings(Protocol):
    """Strings kept as stored in the file, split only when asked."""

    def __len__(self) -> int: ...
    def unpack(self) -> list[bytes]: ...


class LazyArray:
    """A big metadata array as read: undecoded strings (a list of bytes or PackedStrings) or
    an ``array.array``; :meth:`value` makes the list ``GGUFHeader.kv`` holds."""

    __slots__ = ("data", "unique_checked", "vtype")

    def __init__(self, vtype: int, data: list[bytes] | array.array | PackedStrings,
                 unique_checked: bool = False) -> None:
        self.vtype = vtype
        self.data = data
        self.unique_checked = unique_checked  # the C walk found no empty or repeated entry

    def __len__(self) -> int:
        return len(self.data)

    def raw(self) -> list[bytes]:
        """A string array's undecoded entries."""
        data = self.data
        return data if isinstance(data, list) else data.unpack()  # type: ignore[union-attr]

    def value(self) -> list:
        if self.vtype == STRING:
            return decode_all(self.raw())
        if self.vtype == BOOL:
            return [bool(v) for v in self.data]  # type: ignore[union-attr]
        return self.data.tolist()  # type: ignore[union-attr]


def decode_all(raw: list[bytes]) -> list[str]:
    """UTF-8 texts (undecodable bytes become U+FFFD), decoded in one go when possible."""
    blob = b"\0".join(raw)
    if blob.count(b"\0") == len(raw) - 1:  # no zero byte inside a string
        try:
            return blob.decode().split("\0") if raw else []
        except UnicodeDecodeError:
            pass
    return [t.decode("utf-8", errors="replace") for t in raw]


@dataclass(eq=False)
class GGUFHeader:
    """Everything in a GGUF file but the tensor data.

    ``raw_kv`` is the metadata as read (big arrays possibly still :class:`LazyArray`);
    ``kv`` the same dict with every value a plain value or list.
    """

    path: str
    version: int
    raw_kv: dict[str, object]
    tensors: list[TensorInfo]
    kv_types: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # (type, item type)
    alignment: int = GGUF_DEFAULT_ALIGNMENT
    data_offset: int = 0
    file_size: int = 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GGUFHeader):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def _fields(self) -> tuple[object, ...]:
        return (self.path, self.version, self.kv, self.tensors, self.kv_types, self.alignment,
                self.data_offset, self.file_size)

    @cached_property
    def kv(self) -> dict[str, object]:
        """The metadata, every big array made into a list (once, in place)."""
        kv = self.raw_kv
        for key, v in kv.items():
            if isinstance(v, LazyArray):
                kv[key] = v.value()
        return kv

    def value(self, key: str, default: object = None) -> object:
        """One metadata value as ``kv`` has it, decoding only that key if needed."""
        kv = self.raw_kv
        v = kv.get(key, default)
        if isinstance(v, LazyArray):
            v = kv[key] = v.value()
        return v

    @cached_property
    def _by_name(self) -> dict[str, TensorInfo]:
        return {t.name: t for t in self.tensors}

    def tensor_map(self) -> dict[str, TensorInfo]:
        """Tensors by name (built once per header: adapters are checked against it)."""
        return self._by_name

    @property
    def architecture(self) -> str | None:
        arch = self.value("general.architecture")
        return arch if isinstance(arch, str) else None
