"""Byte-level edits of GGUF files (pure Python, stdlib only: also runs in Pyodide).

``layout(data)`` walks a *valid* GGUF file and returns where each header field sits, so tests
and the fuzzer can make a header lie (inflated counts, lengths, dims, types) precisely;
``make_lying_header`` writes the lying copies the test fixtures include.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

# GGUF value type -> size of one scalar (strings and arrays handled apart)
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY = 8, 9
N_TENSORS_AT = 8
N_KV_AT = 16


@dataclass
class KeyLayout:
    """Offsets of one metadata entry's fields."""

    name: str
    at: int  # the key's length prefix
    type_at: int
    value_at: int  # for strings: the length prefix; for arrays: the item type
    vtype: int
    item_type: int | None = None
    count_at: int | None = None  # arrays: element count
    first_len_at: int | None = None  # string arrays: first element's length prefix
    end: int = 0


@dataclass
class TensorLayout:
    """Offsets of one tensor info's fields."""

    name: str
    at: int  # the name's length prefix
    n_dims_at: int
    dims_at: list[int]
    type_at: int
    offset_at: int


@dataclass
class Layout:
    keys: list[KeyLayout] = field(default_factory=list)
    tensors: list[TensorLayout] = field(default_factory=list)
    header_end: int = 0

    def key(self, name: str) -> KeyLayout:
        return next(k for k in self.keys if k.name == name)

    def tensor(self, name: str) -> TensorLayout:
        return next(t for t in self.tensors if t.name == name)


def _u32(d: bytes | bytearray, at: int) -> int:
    return struct.unpack_from("<I", d, at)[0]


def _u64(d: bytes | bytearray, at: int) -> int:
    return struct.unpack_from("<Q", d, at)[0]


def layout(data: bytes | bytearray) -> Layout:
    """Field offsets of a well-formed GGUF file (v2/v3, little-endian)."""
    if data[:4] != b"GGUF":
        raise ValueError("not a GGUF file")
    n_tensors, n_kv = _u64(data, N_TENSORS_AT), _u64(data, N_KV_AT)
    size = len(data)
    if n_tensors > size or n_kv > size:
        raise ValueError("counts larger than the file")
    pos = 24
    out = Layout()
    for _ in range(n_kv):
        at = pos
        n = _u64(data, pos)
        name = bytes(data[pos + 8:pos + 8 + n]).decode("utf-8", "replace")
        pos += 8 + n
        type_at = pos
        vtype = _u32(data, pos)
        pos += 4
        k = KeyLayout(name, at, type_at, pos, vtype)
        if vtype == STRING:
            pos += 8 + _u64(data, pos)
        elif vtype == ARRAY:
            k.item_type = _u32(data, pos)
            k.count_at = pos + 4
            count = _u64(data, pos + 4)
            if count > size:
                raise ValueError("array count larger than the file")
            pos += 12
            if k.item_type == STRING:
                k.first_len_at = pos if count else None
                for _ in range(count):
                    pos += 8 + _u64(data, pos)
            else:
                pos += count * _SIZES[k.item_type]
        else:
            pos += _SIZES[vtype]
        if pos > size:
            raise ValueError("metadata runs past the end")
        k.end = pos
        out.keys.append(k)
    for _ in range(n_tensors):
        at = pos
        n = _u64(data, pos)
        name = bytes(data[pos + 8:pos + 8 + n]).decode("utf-8", "replace")
        pos += 8 + n
        n_dims_at = pos
        n_dims = _u32(data, pos)
        if n_dims > 4:
            raise ValueError("too many dimensions")
        pos += 4
        dims_at = [pos + 8 * j for j in range(n_dims)]
        pos += 8 * n_dims
        out.tensors.append(TensorLayout(name, at, n_dims_at, dims_at, pos, pos + 4))
        pos += 12
    out.header_end = pos
    return out


def put_u32(data: bytearray, at: int, value: int) -> None:
    struct.pack_into("<I", data, at, value & 0xFFFFFFFF)


def put_u64(data: bytearray, at: int, value: int) -> None:
    struct.pack_into("<Q", data, at, value & 0xFFFFFFFFFFFFFFFF)


def rename_key(data: bytearray, key: KeyLayout, new_name: str) -> None:
    """Overwrite a key's name in place with another of the same byte length."""
    raw = new_name.encode()
    if len(raw) != _u64(data, key.at):
        raise ValueError("new key name must have the same length")
    data[key.at + 8:key.at + 8 + len(raw)] = raw


def rename_tensor(data: bytearray, t: TensorLayout, new_name: str) -> None:
    """Overwrite a tensor's name in place with another of the same byte length."""
    raw = new_name.encode()
    if len(raw) != _u64(data, t.at):
        raise ValueError("new tensor name must have the same length")
    data[t.at + 8:t.at + 8 + len(raw)] = raw


def make_lying_header(path: str | os.PathLike[str], model: str | os.PathLike[str],
                      what: str = "n_tensors") -> str:
    """A copy of ``model`` whose header lies about one size.

    ``what``: "n_tensors" or "n_kv" (inflated to 2**40), "string" (first key's length),
    "array" (token list count), "dims" (a dimension of the first tensor).
    """
    with open(model, "rb") as f:
        data = bytearray(f.read())
    lay = layout(data)
    if what == "n_tensors":
        put_u64(data, N_TENSORS_AT, 1 << 40)
    elif what == "n_kv":
        put_u64(data, N_KV_AT, 1 << 40)
    elif what == "string":
        put_u64(data, lay.keys[0].at, 1 << 40)
    elif what == "array":
        at = lay.key("tokenizer.ggml.tokens").count_at
        assert at is not None
        put_u64(data, at, 1 << 29)
    elif what == "dims":
        put_u64(data, lay.tensors[0].dims_at[0], 1 << 40)
    else:
        raise ValueError(f"unknown header size {what!r}")
    with open(path, "wb") as f:
        f.write(data)
    return os.fspath(path)
