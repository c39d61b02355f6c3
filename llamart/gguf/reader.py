"""Read and check a GGUF file's header, metadata and tensor infos (stdlib only: runs in Pyodide).

Only the header, the key/value metadata and the tensor infos are read, with a few large
reads; tensor data is never touched.  Every count and length is checked against the bytes left
in the file *before* anything is allocated, so a file whose header lies fails fast.  The checks
follow llama.cpp's own GGUF loader (ggml/src/gguf.cpp) at the pinned commit, with messages that
name the offending key or tensor.

Validation runs on every model load, and tokenizer vocabularies hold 10^4-10^5 strings: the
caller may pass ``scan``, the C library's ``lm_gguf_scan_strings`` (see llamart/gguf/c_scan.py), to
walk big string arrays in C; arrays it refuses, and every array when there is no scanner, take
the one Python walk (:meth:`_Reader.strings`), which names the exact problem.  Arrays of 1024+
items stay undecoded until ``GGUFHeader.kv`` is first read.  tools/bench_validate.py measures
the cost.
"""

from __future__ import annotations

import array
import io
import math
import os
import struct
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

from ..bindings._c_constants import LM_ERR_BUFFER  # a data module: gguf/ uses no backend
from .header import GGUFError, GGUFHeader, LazyArray, TensorInfo, decode_all
from .spec import (
    ARRAY,
    BOOL,
    GGML_MAX_DIMS,
    GGML_MAX_NAME,
    GGML_TYPE_COUNT,
    GGML_TYPES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGUF_MAX_ARRAY_ELEMENTS,
    GGUF_MAX_STRING_LENGTH,
    INT64_MAX,
    SCALARS,
    STRING,
    UINT32,
    VALUE_TYPE_NAMES,
)

__all__ = ["StringScan", "read_header"]

# (data, n, max_len, unique) -> bytes the n strings at the start of data take, or a negative
# code: lm_gguf_scan_strings of the llamart C library (natively or in the WebAssembly module)
StringScan = Callable[[memoryview, int, int, bool], int]

_CHUNK = 1 << 20  # first read (at most; less for small files); later reads double the buffer
_LAZY_MIN = 1024  # arrays this long are turned into lists only when GGUFHeader.kv is read
_MAX_SCAN_BUFFER = 64 << 20  # the C string walk never buffers more than this
_SCAN_NEEDS_MORE = LM_ERR_BUFFER  # from lm_gguf_scan_strings: the strings run past buf
_INT32_MAX = (1 << 31) - 1  # lm_gguf_scan_strings takes int32 sizes and counts
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, smallest value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, type, offset
_MAX_TENSOR_INFO_BYTES = 8 + GGML_MAX_NAME + 4 + 8 * GGML_MAX_DIMS + 4 + 8
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_DIMS = [struct.Struct(f"<{n}q") for n in range(GGML_MAX_DIMS + 1)]
_TYPE_OFFSET = struct.Struct("<IQ")
_SCALAR_FORMATS = {vtype: struct.Struct(fmt) for vtype, (fmt, _, _) in SCALARS.items()}


class _Reader:
    """Buffered little-endian reads that never pass the end of the file.

    The buffer grows geometrically (few large reads) and keeps only what is still unread.
    """

    def __init__(self, f: BinaryIO, size: int, path: str,
                 scan: StringScan | None = None) -> None:
        self.f = f
        self.size = size
        self.path = path
        self.scan = scan  # the C string walk for big string arrays, if given
        self.chunk = min(_CHUNK, max(64 << 10, size // 16))  # an adapter's header: ~64 KB
        self.buf = b""
        self.pos = 0  # position inside buf
        self.base = 0  # file offset of buf[0]

    def tell(self) -> int:
        return self.base + self.pos

    def remaining(self) -> int:
        return self.size - self.base - self.pos

    def fail(self, reason: str) -> GGUFError:
        return GGUFError(reason, self.path)

    def _fill(self, n: int) -> int:
        """Try to have n bytes (at most what the file has left) in buf at pos; return how
        many are there now."""
        have = len(self.buf) - self.pos
        if have >= n:
            return have
        want = min(max(n - have, 2 * len(self.buf), self.chunk), self.remaining() - have)
        rest = self.buf[self.pos:]
        self.base += self.pos
        self.pos = 0
        self.buf = rest + self.f.read(want) if want > 0 else rest
        return len(self.buf)

    def need(self, n: int, what: str) -> None:
        """Make n bytes available in buf at pos, or fail naming what was being read."""
        if self.pos + n <= len(self.buf):
            return
        if n > self.remaining():
            raise self.fail(
                f"{what} at offset {self.tell()} needs {n} bytes but only {self.remaining()} "
                f"remain (file size {self.size}): truncated or corrupt"
            )
        if self._fill(n) < n:
            raise self.fail(f"{what} at offset {self.tell()}: short read (file changed?)")

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def number(self, fmt: struct.Struct, what: str) -> Any:
        """One little-endian number in the struct format ``fmt``."""
        self.need(fmt.size, what)
        (v,) = fmt.unpack_from(self.buf, self.pos)
        self.pos += fmt.size
        return v

    def u32(self, what: str) -> int:
        return self.number(_U32, what)

    def u64(self, what: str) -> int:
        return self.number(_U64, what)

    def i64(self, what: str) -> int:
        return self.number(_I64, what)

    def string(self, what: str) -> str:
        n = self.u64(f"length of {what}")
        if n > GGUF_MAX_STRING_LENGTH:
            raise self.fail(f"{what} has length {n}, above the limit {GGUF_MAX_STRING_LENGTH}")
        if n > self.remaining():
            raise self.fail(
                f"{what} has length {n} but only {self.remaining()} bytes remain in the file"
            )
        return self.take(n, what).decode("utf-8", errors="replace")

    def strings(self, n: int, what: str) -> list[bytes]:
        """n length-prefixed strings, undecoded: the Python walk, which names what is wrong."""
        out: list[bytes] = []
        append = out.append
        unpack = _U64.unpack_from
        buf, pos, end = self.buf, self.pos, len(self.buf)
        for i in range(n):
            if pos + 8 > end:
                self.pos = pos
                self.need(8, f"length of {what}[{i}]")
                buf, pos, end = self.buf, self.pos, len(self.buf)
            (k,) = unpack(buf, pos)
            pos += 8
            if pos + k > end:
                self.pos = pos
                if k > GGUF_MAX_STRING_LENGTH or k > self.remaining():
                    raise self.fail(f"{what}[{i}] has length {k} but only {self.remaining()} "
                                    f"bytes remain in the file")
                self.need(k, f"{what}[{i}]")
                buf, pos, end = self.buf, self.pos, len(self.buf)
            append(buf[pos:pos + k])
            pos += k
        self.pos = pos
        return out

    def scalar(self, vtype: int, what: str) -> object:
        v = self.number(_SCALAR_FORMATS[vtype], what)
        return bool(v) if vtype == BOOL else v

    def _scanned_strings(self, n: int, unique: bool) -> LazyArray | None:
        """n strings walked (and, if unique, checked for empty or repeated entries) by the
        C scanner, kept packed; None when it refuses them: the Python walk then runs
        and reports the exact reason."""
        assert self.scan is not None
        want = min(16 * n + 4096, self.remaining())
        while True:
            avail = self._fill(want)
            data = memoryview(self.buf)[self.pos:self.pos + min(avail, _INT32_MAX)]
            used = self.scan(data, n, GGUF_MAX_STRING_LENGTH, unique)
            if used >= 0:
                region = self.buf[self.pos:self.pos + used]
                self.pos += used
                return LazyArray(STRING, _Packed(region, n, self.path), unique_checked=unique)
            if (used != _SCAN_NEEDS_MORE or avail >= self.remaining()
                    or avail >= _MAX_SCAN_BUFFER):
                return None
            want = min(2 * avail, self.remaining())

    def array(self, vtype: int, n: int, what: str, unique: bool = False) -> object:
        """The array's items as a list, or a LazyArray for n >= _LAZY_MIN."""
        if vtype == STRING:
            if n * 8 > self.remaining():
                raise self.fail(
                    f"{what}: array of {n} strings needs at least {n * 8} bytes but only "
                    f"{self.remaining()} remain in the file"
                )
            if self.scan is not None and _LAZY_MIN <= n <= _INT32_MAX:
                scanned = self._scanned_strings(n, unique)
                if scanned is not None:
                    return scanned
            raw = self.strings(n, what)
            return LazyArray(vtype, raw) if n >= _LAZY_MIN else decode_all(raw)
        _, size, code = SCALARS[vtype]
        if n * size > self.remaining():
            raise self.fail(
                f"{what}: array of {n} {VALUE_TYPE_NAMES[vtype]} needs {n * size} bytes but only "
                f"{self.remaining()} remain in the file"
            )
        arr = array.array(code)
        if arr.itemsize != size:  # e.g. a platform where "I" is not 4 bytes
            return list(struct.unpack(f"<{n}{code}", self.take(n * size, what)))
        self.need(n * size, what)
        arr.frombytes(memoryview(self.buf)[self.pos:self.pos + n * size])
        self.pos += n * size
        if sys.byteorder == "big":
            arr.byteswap()
        return LazyArray(vtype, arr) if n >= _LAZY_MIN else LazyArray(vtype, arr).value()


class _Packed:
    """n GGUF strings as stored (length-prefixed, checked by the C walk), split in Python
    only if someone reads them (a PackedStrings)."""

    __slots__ = ("n", "path", "region")

    def __init__(self, region: bytes, n: int, path: str) -> None:
        self.region, self.n, self.path = region, n, path

    def __len__(self) -> int:
        return self.n

    def unpack(self) -> list[bytes]:
        r = _Reader(io.BytesIO(self.region), len(self.region), self.path)
        return r.strings(self.n, "string array")


def _read_value(r: _Reader, key: str) -> tuple[object, int, int | None]:
    vtype = r.u32(f"type of key '{key}'")
    if vtype == ARRAY:
        itype = r.u32(f"item type of key '{key}'")
        if itype not in SCALARS and itype != STRING:
            raise r.fail(f"key '{key}' is an array of invalid GGUF type {itype}")
        n = r.u64(f"length of array '{key}'")
        if n > GGUF_MAX_ARRAY_ELEMENTS:
            raise r.fail(f"key '{key}' has {n} array elements, above the limit "
                         f"{GGUF_MAX_ARRAY_ELEMENTS}")
        unique = key == "tokenizer.ggml.tokens"  # llama.cpp aborts on repeated tokens
        return r.array(itype, n, f"key '{key}'", unique), ARRAY, itype
    if vtype == STRING:
        return r.string(f"value of key '{key}'"), STRING, None
    if vtype not in SCALARS:
        raise r.fail(f"key '{key}' has invalid GGUF type {vtype}")
    return r.scalar(vtype, f"value of key '{key}'"), vtype, None


def _read_tensor_infos(r: _Reader, n: int) -> list[tuple[str, tuple[int, ...], int, int, int]]:
    """All tensor infos: (name, shape, type, offset, nbytes), checked, names unique.

    Entries that are buffered whole, with an ASCII name, a known type and sane dimensions go
    through one tight loop; any other entry takes _read_tensor_info, which names the problem.
    """
    raw: list[tuple[str, tuple[int, ...], int, int, int]] = []
    seen: set[str] = set()
    u64, u32, dims, type_offset, types = _U64, _U32, _DIMS, _TYPE_OFFSET, GGML_TYPES
    i = 0
    while i < n:
        buf, pos = r.buf, r.pos
        end = len(buf) - _MAX_TENSOR_INFO_BYTES
        while i < n and pos <= end:
            (k,) = u64.unpack_from(buf, pos)
            if k >= GGML_MAX_NAME:
                break
            name_b = buf[pos + 8:pos + 8 + k]
            p = pos + 8 + k
            (n_dims,) = u32.unpack_from(buf, p)
            if n_dims > GGML_MAX_DIMS or not name_b.isascii():
                break
            shape = dims[n_dims].unpack_from(buf, p + 4)
            ggml_type, offset = type_offset.unpack_from(buf, p + 4 + 8 * n_dims)
            known = types.get(ggml_type)
            n_el = math.prod(shape)
            if (known is None or (shape and min(shape) < 0) or n_el > INT64_MAX
                    or (shape[0] if shape else 1) % known[1]):
                break
            name = name_b.decode("ascii")
            if name in seen:
                raise r.fail(f"duplicate tensor name '{name}'")
            seen.add(name)
            raw.append((name, shape, ggml_type, offset, n_el // known[1] * known[2]))
            pos = p + 16 + 8 * n_dims
            i += 1
        r.pos = pos
        if i < n:  # the careful path for one entry, then back to the loop
            info = _read_tensor_info(r, i)
            if info[0] in seen:
                raise r.fail(f"duplicate tensor name '{info[0]}'")
            seen.add(info[0])
            raw.append(info)
            i += 1
    return raw


def _read_tensor_info(r: _Reader, i: int) -> tuple[str, tuple[int, ...], int, int, int]:
    """One tensor info, read field by field with every check and its message."""
    name = r.string(f"name of tensor {i}")
    if len(name.encode("utf-8", errors="replace")) >= GGML_MAX_NAME:
        raise r.fail(f"tensor {i} name '{name[:80]}' is too long "
                     f"({len(name)} >= {GGML_MAX_NAME})")
    n_dims = r.u32(f"n_dims of tensor '{name}'")
    if n_dims > GGML_MAX_DIMS:
        raise r.fail(f"tensor '{name}' has {n_dims} dimensions (at most {GGML_MAX_DIMS})")
    shape = tuple(r.i64(f"dimension {j} of tensor '{name}'") for j in range(n_dims))
    _check_shape(r, name, shape)
    ggml_type = r.u32(f"type of tensor '{name}'")
    nbytes = _check_type(r, name, shape, ggml_type)
    offset = r.u64(f"data offset of tensor '{name}'")
    return name, shape, ggml_type, offset, nbytes


def _check_shape(r: _Reader, name: str, shape: tuple[int, ...]) -> None:
    n_el = 1
    for j, d in enumerate(shape):
        if d < 0:
            raise r.fail(f"tensor '{name}' dimension {j} is negative ({d})")
        n_el *= d
    if n_el > INT64_MAX:
        raise r.fail(f"tensor '{name}' shape {list(shape)} overflows int64 elements")


def _check_type(r: _Reader, name: str, shape: tuple[int, ...], ggml_type: int) -> int:
    """Check the type against the shape; return the data size in bytes."""
    if ggml_type not in GGML_TYPES:
        what = "removed" if ggml_type < GGML_TYPE_COUNT else "unknown"
        raise r.fail(f"tensor '{name}' has {what} ggml type {ggml_type}")
    tname, blck, tsize = GGML_TYPES[ggml_type]
    ne0 = shape[0] if shape else 1
    if ne0 % blck:
        raise r.fail(f"tensor '{name}' of type {tname} has {ne0} elements per row, "
                     f"not a multiple of the block size {blck}")
    n_el = 1
    for d in shape:
        n_el *= d
    return n_el // blck * tsize


def _parse(r: _Reader, spath: str, size: int) -> GGUFHeader:
    if size < 4:
        raise r.fail(f"file is only {size} bytes, too short for a GGUF header")
    magic = r.take(4, "magic")
    if magic != GGUF_MAGIC:
        raise r.fail(f"not a GGUF file (magic {magic!r}, expected b'GGUF')")
    version = r.u32("version")
    if version & 0xFFFF == 0 and version:
        raise r.fail(f"GGUF version {version:#x} looks byte-swapped (big-endian file?)")
    if version == 1:
        raise r.fail("GGUF version 1 is no longer supported (need 2 or 3)")
    if version not in (2, 3):
        raise r.fail(f"unsupported GGUF version {version} (need 2 or 3)")
    n_tensors = r.i64("tensor count")
    n_kv = r.i64("metadata count")
    if n_tensors < 0 or n_tensors * _MIN_TENSOR_INFO_BYTES > r.remaining():
        raise r.fail(f"header claims {n_tensors} tensors, impossible in a file of {size} bytes")
    if n_kv < 0 or n_kv * _MIN_KV_BYTES > r.remaining():
        raise r.fail(f"header claims {n_kv} metadata keys, impossible in a file of {size} bytes")

    kv: dict[str, object] = {}
    kv_types: dict[str, tuple[int, int | None]] = {}
    for i in range(n_kv):
        key = r.string(f"key {i}")
        if not key:
            raise r.fail(f"metadata key {i} is empty")
        if key in kv:
            raise r.fail(f"duplicate metadata key '{key}'")
        value, vtype, itype = _read_value(r, key)
        kv[key] = value
        kv_types[key] = (vtype, itype)

    alignment = GGUF_DEFAULT_ALIGNMENT
    if "general.alignment" in kv:
        if kv_types["general.alignment"][0] != UINT32:
            raise r.fail("key 'general.alignment' must be of type u32")
        alignment = int(kv["general.alignment"])  # type: ignore[arg-type]
        if alignment == 0 or alignment & (alignment - 1):
            raise r.fail(f"general.alignment {alignment} is not a power of 2")

    raw = _read_tensor_infos(r, n_tensors)

    data_offset = r.tell()
    if n_tensors:
        data_offset += -data_offset % alignment
        if data_offset > size:
            raise r.fail(f"tensor data section would start at {data_offset}, past end of file "
                         f"(size {size})")
    tensors = [TensorInfo(n, s, t, data_offset + off, nb) for n, s, t, off, nb in raw]
    _check_tensor_layout(r, tensors, alignment, data_offset)
    return GGUFHeader(spath, version, kv, tensors, kv_types, alignment, data_offset, size)


def _check_tensor_layout(r: _Reader, tensors: list[TensorInfo], alignment: int,
                         data_offset: int) -> None:
    size = r.size
    for t in tensors:
        rel = t.offset - data_offset
        if rel % alignment:
            raise r.fail(f"tensor '{t.name}' offset {rel} is not a multiple of the alignment "
                         f"{alignment}")
        end = t.offset + t.nbytes
        if end > size:
            raise r.fail(f"tensor '{t.name}' data [{t.offset}..{end}) runs past end of file "
                         f"(size {size})")
    by_start = sorted(tensors, key=lambda t: (t.offset, t.nbytes))
    for a, b in zip(by_start, by_start[1:], strict=False):
        if b.offset < a.offset + a.nbytes:
            raise r.fail(f"tensors '{a.name}' [{a.offset}..{a.offset + a.nbytes}) and "
                         f"'{b.name}' [{b.offset}..{b.offset + b.nbytes}) overlap")
    expected = 0  # llama.cpp also requires the data packed in header order, each padded
    for t in tensors:
        rel = t.offset - data_offset
        if rel != expected:
            raise r.fail(f"tensor '{t.name}' has data offset {rel}, expected {expected} "
                         f"(tensor data must be packed in header order)")
        expected += t.nbytes + (-t.nbytes % alignment)


def read_header(path: str | os.PathLike[str], *, scan: StringScan | None = None) -> GGUFHeader:
    """Read and check a GGUF file's header, metadata and tensor infos (never tensor data).

    Raises FileNotFoundError for a missing file and GGUFError naming the file and the reason
    for anything malformed.  ``scan`` (the C string walk, see llamart/gguf/c_scan.py) speeds up big
    string arrays; without it they are walked in Python, with the same result.
    """
    spath = os.fspath(path)
    if not os.path.exists(spath):
        raise FileNotFoundError(f"no such file: {spath}")
    if os.path.isdir(spath):
        raise GGUFError("is a directory, not a GGUF file", spath)
    size = os.path.getsize(spath)
    if size == 0:
        raise GGUFError("file is empty (0 bytes), not a GGUF file", spath)
    with open(spath, "rb") as f:
        r = _Reader(f, size, spath, scan)
        return _parse(r, spath, size)
