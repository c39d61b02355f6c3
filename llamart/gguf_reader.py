"""Read and check GGUF headers in pure Python (stdlib only: runs in Pyodide too).

Only the header, the key/value metadata and the tensor infos are read, with a few large
reads; tensor data is never touched.  Every count and length is checked against the bytes left
in the file *before* anything is allocated, so a file whose header lies fails fast.  The checks
follow llama.cpp's own GGUF loader (ggml/src/gguf.cpp) and LoRA loader (src/llama-adapter.cpp)
at the pinned commit, with messages that name the offending key or tensor.

Validation runs on every model load, so the hot path (tokenizer vocabularies of 10^4-10^5
strings) avoids per-string Python code: string arrays are split and verified with bulk byte
operations (``_Reader._short_strings``), and arrays of 1024+ items stay undecoded until
``GGUFHeader.kv`` is first read.  tools/bench_validate.py measures the cost.
"""

from __future__ import annotations

import array
import io
import math
import os
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

__all__ = [
    "GGML_TYPES",
    "GGUFError",
    "GGUFHeader",
    "TensorInfo",
    "adapter_summary",
    "model_summary",
    "read_header",
    "validate_adapter",
    "validate_model",
]

GGUF_MAGIC = b"GGUF"
GGUF_DEFAULT_ALIGNMENT = 32
GGML_MAX_DIMS = 4
GGML_MAX_NAME = 64  # tensor names must be shorter than this
GGUF_MAX_STRING_LENGTH = 1 << 30
GGUF_MAX_ARRAY_ELEMENTS = 1 << 30
INT64_MAX = (1 << 63) - 1

# ggml type id -> (name, block size, bytes per block), from ggml.c type_traits at the pinned
# commit.  Removed/deprecated ids (block size 0 there) are absent: a tensor using one is refused.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
    42: ("Q2_0", 64, 18),
}
GGML_TYPE_COUNT = 43
# Types the CPU backend can multiply and add with (it has a vec_dot for them): model weights and
# LoRA tensors of any other type (I8..I64, F64, Q8_1, Q8_K) crash llama.cpp when evaluated.
COMPUTE_TYPES = frozenset(t for t, (n, _, _) in GGML_TYPES.items()
                          if n not in ("I8", "I16", "I32", "I64", "F64", "Q8_1", "Q8_K"))

# GGUF metadata value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = (
    range(13)
)
VALUE_TYPE_NAMES = {
    UINT8: "u8", INT8: "i8", UINT16: "u16", INT16: "i16", UINT32: "u32", INT32: "i32",
    FLOAT32: "f32", BOOL: "bool", STRING: "str", ARRAY: "arr", UINT64: "u64", INT64: "i64",
    FLOAT64: "f64",
}
# scalar type -> (struct format, size, array typecode)
_SCALARS: dict[int, tuple[str, int, str]] = {
    UINT8: ("<B", 1, "B"),
    INT8: ("<b", 1, "b"),
    UINT16: ("<H", 2, "H"),
    INT16: ("<h", 2, "h"),
    UINT32: ("<I", 4, "I"),
    INT32: ("<i", 4, "i"),
    FLOAT32: ("<f", 4, "f"),
    BOOL: ("<b", 1, "b"),
    UINT64: ("<Q", 8, "Q"),
    INT64: ("<q", 8, "q"),
    FLOAT64: ("<d", 8, "d"),
}
_CHUNK = 1 << 20  # first read (at most; less for small files); later reads double the buffer
_MAX_FAST_BUFFER = 8 << 20  # the string-array fast path never buffers more than this
_FAST_MIN_STRINGS = 64  # shorter string arrays (and odd stretches) take the plain loop
_FAST_CHUNK = 16384  # strings guessed per split
_LAZY_MIN = 1024  # arrays this long are turned into lists only when GGUFHeader.kv is read
_MAX_SCAN_BUFFER = 64 << 20  # the native string walk never buffers more than this
_SCAN_NEEDS_MORE = -5  # LM_ERR_BUFFER from lm_gguf_scan_strings: the strings run past buf

# (data, n, max_len, unique) -> bytes the n strings at the start of data take, or a negative code
StringScan = Callable[[memoryview, int, int, bool], int]
_scanner: list[StringScan | None] = []
_INT32_MAX = (1 << 31) - 1  # lm_gguf_scan_strings takes int32 sizes and counts


def c_string_scan() -> StringScan | None:
    """The llamart C library's lm_gguf_scan_strings (libllamart natively, the WebAssembly
    module in Pyodide once it is registered), or None: the walk over big string arrays
    (tokenizer vocabularies, merges) runs in C, and any array it refuses is walked again in
    Python, which names the exact problem."""
    if not _scanner:
        try:
            if sys.platform == "emscripten":
                from .backends.wasm import gguf_string_scan
            else:
                from .backends.native import gguf_string_scan
            _scanner.append(gguf_string_scan())
        except (ImportError, OSError):
            if sys.platform != "emscripten":
                _scanner.append(None)  # natively: asked once
            return None
    return _scanner[0]


_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, smallest value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, type, offset
_MAX_TENSOR_INFO_BYTES = 8 + GGML_MAX_NAME + 4 + 8 * GGML_MAX_DIMS + 4 + 8
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_DIMS = [struct.Struct(f"<{n}q") for n in range(GGML_MAX_DIMS + 1)]
_TYPE_OFFSET = struct.Struct("<IQ")
_SEP7 = b"\0" * 7  # the high bytes of a string length below 256
_MINUS_ONE = bytes((i - 1) % 256 for i in range(256))
_HUNDREDS = bytes(48 + k // 100 for k in range(256))  # ASCII digits of a byte value
_TENS = bytes(48 + k // 10 % 10 for k in range(256))
_ONES = bytes(48 + k % 10 for k in range(256))


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


@dataclass
class GGUFHeader:
    """Everything in a GGUF file but the tensor data.  ``kv`` holds plain values and lists;
    long arrays are made into lists when ``kv`` is first read."""

    path: str
    version: int
    kv: dict[str, object]
    tensors: list[TensorInfo]
    kv_types: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # (type, item type)
    alignment: int = GGUF_DEFAULT_ALIGNMENT
    data_offset: int = 0
    file_size: int = 0

    def tensor_map(self) -> dict[str, TensorInfo]:
        """Tensors by name (built once per header: adapters are checked against it)."""
        cached = self.__dict__.get("_tensor_map")
        if cached is None or len(cached) != len(self.tensors):
            cached = self.__dict__["_tensor_map"] = {t.name: t for t in self.tensors}
        return cached

    @property
    def architecture(self) -> str | None:
        arch = _value(self, "general.architecture")
        return arch if isinstance(arch, str) else None


def _get_kv(h: GGUFHeader) -> dict[str, object]:
    """GGUFHeader.kv: the metadata, big arrays made into lists on first access."""
    d = h.__dict__
    kv = d["_kv"]
    if d.get("_lazy"):
        for key in list(d["_lazy"]):
            v = kv[key]
            if isinstance(v, _Lazy):
                kv[key] = v.value()
        d["_lazy"] = []
    return kv


def _set_kv(h: GGUFHeader, kv: dict[str, object]) -> None:
    h.__dict__["_kv"] = kv
    h.__dict__["_lazy"] = [k for k, v in kv.items() if isinstance(v, _Lazy)]


GGUFHeader.kv = property(_get_kv, _set_kv)  # type: ignore[assignment]


def _raw_kv(h: GGUFHeader) -> dict[str, object]:
    """The metadata as stored (big arrays possibly still _Lazy): for checks that must not
    pay for decoding.  Only keys, lengths and _value() results are read from it."""
    return h.__dict__["_kv"]


def _value(h: GGUFHeader, key: str, default: object = None) -> object:
    """One metadata value as GGUFHeader.kv has it (decoding only that key if needed)."""
    kv = _raw_kv(h)
    v = kv.get(key, default)
    if isinstance(v, _Lazy):
        v = kv[key] = v.value()
    return v


class _Reader:
    """Buffered little-endian reads that never pass the end of the file.

    The buffer grows geometrically (few large reads) and keeps only what is still unread.
    """

    def __init__(self, f: BinaryIO, size: int, path: str,
                 scan: StringScan | None = None) -> None:
        self.f = f
        self.size = size
        self.path = path
        self.scan = scan  # the native string walker (fast path for big string arrays)
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

    def u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return v

    def i64(self, what: str) -> int:
        self.need(8, what)
        (v,) = _I64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return v

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
        """n length-prefixed strings, undecoded (the hot path for tokenizer vocabularies)."""
        raw: list[bytes] = []
        slow = _FAST_MIN_STRINGS  # after each miss of the fast path, twice as many by the loop
        chunk = _FAST_CHUNK  # strings tried per fast step: about twice what the last one got
        while len(raw) < n:
            left = n - len(raw)
            got = self._short_strings(min(left, chunk)) if left > _FAST_MIN_STRINGS else ()
            raw += got
            chunk = min(max(2 * len(got), 4 * _FAST_MIN_STRINGS), _FAST_CHUNK)
            if len(got) >= _FAST_MIN_STRINGS:
                slow = _FAST_MIN_STRINGS
            elif len(raw) < n:  # long strings, zero bytes in strings, or a lie: the plain loop
                raw += self._raw_strings(min(n - len(raw), slow), what, len(raw))
                slow *= 2
        return raw

    def _short_strings(self, m: int) -> tuple[bytes, ...]:
        """The raw texts of (a prefix of) the next m (<= _FAST_CHUNK) strings, found without
        a Python loop.

        A length below 256 is stored as one byte then seven zero bytes, so one C-level split
        on seven zeros guesses every string's length (its piece's size minus the next length
        byte).  The guess is then checked by unpacking the data with a struct format built
        from it: each length read must equal the guessed one, so the strings returned are
        exactly what the length-prefixed walk reads.  Strings from the first wrong guess on
        (a long string, zero bytes inside a string, a lie) are left for the plain loop.
        """
        c = m
        most = min(c * (8 + 255) + 8, self.remaining())  # c short strings take no more
        est = min(24 * c + 4096, most)
        while True:
            avail = min(self._fill(est), est)
            region = self.buf[self.pos:self.pos + avail]
            pieces = region.split(_SEP7, c)
            if len(pieces) > c or avail >= most or avail >= _MAX_FAST_BUFFER:
                break
            est = min(2 * avail, most)
        q = len(pieces) - 2  # strings with a guess: piece i + 1 holds text i + next length
        if q < _FAST_MIN_STRINGS or len(pieces[0]) != 1:
            return ()
        try:
            sizes = bytes(map(len, pieces[1:q + 1]))
        except ValueError:  # a piece of 256+ bytes: guess only up to it
            q = next(i for i, s in enumerate(map(len, pieces[1:q + 1])) if s > 255)
            if q < _FAST_MIN_STRINGS:
                return ()
            sizes = bytes(map(len, pieces[1:q + 1]))
        if 0 in sizes:  # an empty piece (a run of 14+ zero bytes): guess only up to it
            q = sizes.index(0)
            if q < _FAST_MIN_STRINGS:
                return ()
            sizes = sizes[:q]
        guess = sizes.translate(_MINUS_ONE)
        fmt = struct.Struct(_qs_format(guess))
        vals = fmt.unpack_from(region)  # pieces 0..q and q separators hold more than this
        found = vals[0::2]
        try:
            ok = bytes(found) == guess
        except ValueError:  # a length of 256+: not what was guessed
            ok = False
        if not ok:
            q = next(i for i, (a, b) in enumerate(zip(found, guess, strict=True)) if a != b)
            if q < _FAST_MIN_STRINGS:
                return ()
            guess = guess[:q]
        self.pos += 8 * q + sum(guess)
        return vals[1:2 * q:2]

    def _raw_strings(self, n: int, what: str, first: int = 0) -> list[bytes]:
        """n strings by the plain loop (entries first .. first + n - 1 of ``what``)."""
        out: list[bytes] = []
        append = out.append
        unpack = _U64.unpack_from
        buf, pos, end = self.buf, self.pos, len(self.buf)
        for i in range(first, first + n):
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
        fmt, size, _ = _SCALARS[vtype]
        self.need(size, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return bool(v) if vtype == BOOL else v

    def _scanned_strings(self, n: int, unique: bool) -> _Lazy | None:
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
                return _Lazy(STRING, _Packed(region, n, self.path), unique_checked=unique)
            if (used != _SCAN_NEEDS_MORE or avail >= self.remaining()
                    or avail >= _MAX_SCAN_BUFFER):
                return None
            want = min(2 * avail, self.remaining())

    def array(self, vtype: int, n: int, what: str, unique: bool = False) -> object:
        """The array's items as a list, or a _Lazy one for n >= _LAZY_MIN."""
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
            return _Lazy(vtype, raw) if n >= _LAZY_MIN else _decode_all(raw)
        _, size, code = _SCALARS[vtype]
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
        return _Lazy(vtype, arr) if n >= _LAZY_MIN else _Lazy(vtype, arr).value()


class _Lazy:
    """A big array as read (undecoded strings, or an array.array): GGUFHeader.kv turns it
    into the list on first use, so validation does not build what it does not look at."""

    __slots__ = ("data", "unique_checked", "vtype")

    def __init__(self, vtype: int, data: list[bytes] | array.array | _Packed,
                 unique_checked: bool = False) -> None:
        self.vtype = vtype
        self.data = data
        self.unique_checked = unique_checked  # the scanner found no empty or repeated entry

    def __len__(self) -> int:
        return len(self.data)

    def raw(self) -> list[bytes]:
        """A string array's undecoded entries."""
        data = self.data
        return data.unpack() if isinstance(data, _Packed) else data  # type: ignore[return-value]

    def value(self) -> list:
        if self.vtype == STRING:
            return _decode_all(self.raw())
        if self.vtype == BOOL:
            return [bool(v) for v in self.data]
        return self.data.tolist()  # type: ignore[union-attr]


class _Packed:
    """n GGUF strings as stored (length-prefixed), walked in Python only if someone reads them."""

    __slots__ = ("n", "path", "region")

    def __init__(self, region: bytes, n: int, path: str) -> None:
        self.region, self.n, self.path = region, n, path

    def __len__(self) -> int:
        return self.n

    def unpack(self) -> list[bytes]:
        r = _Reader(io.BytesIO(self.region), len(self.region), self.path)
        return r.strings(self.n, "string array")


def _qs_format(lengths: bytes) -> bytes:
    """The struct format "<Q<k>sQ<k>s..." for string lengths k < 256, built with bulk byte
    operations (each item is "Q", three digits, "s")."""
    n = len(lengths)
    fmt = bytearray(b"<" + b"Q000s" * n)
    fmt[2::5] = lengths.translate(_HUNDREDS)
    fmt[3::5] = lengths.translate(_TENS)
    fmt[4::5] = lengths.translate(_ONES)
    return bytes(fmt)


def _decode_all(raw: list[bytes]) -> list[str]:
    """UTF-8 texts (undecodable bytes become U+FFFD), decoded in one go when possible."""
    blob = b"\0".join(raw)
    if blob.count(b"\0") == len(raw) - 1:  # no zero byte inside a string
        try:
            return blob.decode().split("\0") if raw else []
        except UnicodeDecodeError:
            pass
    return [t.decode("utf-8", errors="replace") for t in raw]


def _read_value(r: _Reader, key: str) -> tuple[object, int, int | None]:
    vtype = r.u32(f"type of key '{key}'")
    if vtype == ARRAY:
        itype = r.u32(f"item type of key '{key}'")
        if itype not in _SCALARS and itype != STRING:
            raise r.fail(f"key '{key}' is an array of invalid GGUF type {itype}")
        n = r.u64(f"length of array '{key}'")
        if n > GGUF_MAX_ARRAY_ELEMENTS:
            raise r.fail(f"key '{key}' has {n} array elements, above the limit "
                         f"{GGUF_MAX_ARRAY_ELEMENTS}")
        unique = key == "tokenizer.ggml.tokens"  # llama.cpp aborts on repeated tokens
        return r.array(itype, n, f"key '{key}'", unique), ARRAY, itype
    if vtype == STRING:
        return r.string(f"value of key '{key}'"), STRING, None
    if vtype not in _SCALARS:
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


def read_header(path: str | os.PathLike[str], *, c_walk: bool = True) -> GGUFHeader:
    """Read and check a GGUF file's header, metadata and tensor infos (never tensor data).

    Raises FileNotFoundError for a missing file and GGUFError naming the file and the reason
    for anything malformed. ``c_walk=False`` keeps big string arrays on the pure-Python walk.
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
        r = _Reader(f, size, spath, c_string_scan() if c_walk else None)
        return _parse(r, spath, size)


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


# ---- model and adapter checks ----

def _str_key(h: GGUFHeader, key: str, *, required: bool) -> str | None:
    if key not in _raw_kv(h):
        if required:
            raise GGUFError(f"metadata key '{key}' is missing", h.path)
        return None
    vtype = h.kv_types.get(key, (STRING, None))[0]
    if vtype != STRING:
        raise GGUFError(f"metadata key '{key}' must be a string, not "
                        f"{VALUE_TYPE_NAMES.get(vtype, vtype)}", h.path)
    return str(_value(h, key))


# keys llama.cpp reads as arrays of one type (it refuses, or asserts, on any other type)
_ARRAY_KEYS = {
    "tokenizer.ggml.tokens": (STRING,),
    "tokenizer.ggml.merges": (STRING,),
    "tokenizer.ggml.scores": (FLOAT32, INT32),
    "tokenizer.ggml.token_type": (INT32,),
}


def validate_model(path: str | os.PathLike[str], *, allow_no_tensors: bool = False,
                   c_walk: bool = True) -> GGUFHeader:
    """Check that a file is a loadable GGUF model (not an adapter); return its header."""
    h = read_header(path, c_walk=c_walk)
    gtype = _str_key(h, "general.type", required=False)
    if gtype == "adapter":
        raise GGUFError("is a LoRA adapter, not a model (general.type is 'adapter')", h.path)
    if gtype not in (None, "model"):
        raise GGUFError(f"general.type is '{gtype}', expected 'model'", h.path)
    arch = _str_key(h, "general.architecture", required=True)
    if not arch:
        raise GGUFError("general.architecture is empty", h.path)
    for key, types in _ARRAY_KEYS.items():
        if key in _raw_kv(h):
            vtype, itype = h.kv_types[key]
            if vtype != ARRAY or itype not in types:
                want = " or ".join(VALUE_TYPE_NAMES[t] for t in types)
                raise GGUFError(f"metadata key '{key}' must be an array of {want}", h.path)
    tokens = _raw_kv(h).get("tokenizer.ggml.tokens")
    if isinstance(tokens, (list, _Lazy)):
        _check_unique_tokens(h, tokens)
        for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            other = _raw_kv(h).get(key)
            if isinstance(other, (list, _Lazy)) and len(other) < len(tokens):
                raise GGUFError(f"'{key}' has {len(other)} entries for {len(tokens)} tokens",
                                h.path)
    if not h.tensors and not allow_no_tensors:
        raise GGUFError("has no tensors (a vocab-only file?)", h.path)
    _check_compute_types(h)
    _check_hparams(h, arch)
    return h


def _check_unique_tokens(h: GGUFHeader, tokens: list[str] | _Lazy) -> None:
    """llama.cpp asserts (aborts) when two vocabulary entries have the same text."""
    if isinstance(tokens, _Lazy):
        if tokens.unique_checked:
            return
        # Distinct bytes decode to distinct texts unless one is undecodable, and texts with
        # U+FFFD are not compared below: all-distinct, non-empty bytes pass exactly when
        # the loop below would.
        unique: set[object] = set(tokens.raw())
        if len(unique) == len(tokens) and b"" not in unique:  # the usual case, checked in C
            return
        tokens = _value(h, "tokenizer.ggml.tokens")  # type: ignore[assignment]
    else:
        unique = set(tokens)
        if len(unique) == len(tokens) and "" not in unique:
            return
    seen: set[str] = set()
    for i, tok in enumerate(tokens):
        text = tok or f"[EMPTY_{i}]"  # llama.cpp's name for an empty token
        if text in seen and "\ufffd" not in text:  # undecodable bytes: cannot compare here
            raise GGUFError(f"tokenizer.ggml.tokens has token {i} '{text[:40]}' twice", h.path)
        seen.add(text)


LLAMA_MAX_LAYERS = 512
LLAMA_MAX_EXPERTS = 1024
_ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")


def _check_hparams(h: GGUFHeader, arch: str) -> None:
    """Values that llama.cpp's generic hparams loader asserts on (an abort, not an error)."""

    def num(name: str) -> int | None:
        v = _value(h, f"{arch}.{name}")
        if isinstance(v, list):
            v = max((x for x in v if isinstance(x, int)), default=0)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def bad(name: str, why: str) -> GGUFError:
        return GGUFError(f"metadata '{arch}.{name}' {why}", h.path)

    n_layer = num("block_count")
    if n_layer is not None and not 0 < n_layer <= LLAMA_MAX_LAYERS:
        raise bad("block_count", f"is {n_layer}, must be in [1, {LLAMA_MAX_LAYERS}]")
    nextn = num("nextn_predict_layers")
    if n_layer is not None and nextn is not None and nextn > n_layer:
        raise bad("nextn_predict_layers", f"is {nextn}, more than block_count {n_layer}")
    n_expert = num("expert_count") or 0
    used = num("expert_used_count") or 0
    groups = num("expert_group_count") or 0
    group_used = num("expert_group_used_count") or 0
    if n_expert > LLAMA_MAX_EXPERTS:
        raise bad("expert_count", f"is {n_expert}, above {LLAMA_MAX_EXPERTS}")
    if used > n_expert:
        raise bad("expert_used_count", f"is {used}, more than expert_count {n_expert}")
    if n_expert > 0:
        if used == 0:
            raise bad("expert_used_count", "is 0 in a model with experts")
        if groups >= n_expert:
            raise bad("expert_group_count", f"is {groups}, not below expert_count {n_expert}")
        if groups > 1 and (n_expert % groups or not 0 < group_used < groups):
            raise bad("expert_group_count", f"{groups} does not fit expert_count {n_expert} "
                      f"and expert_group_used_count {group_used}")
    elif groups:
        raise bad("expert_group_count", f"is {groups} in a model without experts")
    for key in list(_raw_kv(h)):  # norm epsilons: ggml asserts eps >= 0 when evaluating
        if key.startswith(f"{arch}.") and key.endswith(("epsilon", ".eps")):
            value = _value(h, key)
            vals = value if isinstance(value, list) else [value]
            for v in vals:
                if isinstance(v, float) and not v >= 0.0 or v == float("inf"):
                    raise GGUFError(f"metadata '{key}' is {v}, must be a finite number >= 0",
                                    h.path)
    rope = _value(h, f"{arch}.rope.scaling.type")
    if isinstance(rope, str) and rope not in _ROPE_SCALING_TYPES:
        raise bad("rope.scaling.type", f"is '{rope}', not one of {', '.join(_ROPE_SCALING_TYPES)}")


def _check_compute_types(h: GGUFHeader) -> None:
    if {t.ggml_type for t in h.tensors} <= COMPUTE_TYPES:
        return
    for t in h.tensors:
        if t.ggml_type not in COMPUTE_TYPES:
            raise GGUFError(f"tensor '{t.name}' has type {t.type_name}, which llama.cpp cannot "
                            f"compute with", h.path)


def _lora_pairs(h: GGUFHeader) -> dict[str, list[TensorInfo | None]]:
    """Base tensor name -> [lora_a, lora_b] in header order; unexpected names refused."""
    pairs: dict[str, list[TensorInfo | None]] = {}
    for t in h.tensors:
        if t.name.endswith(".lora_a"):
            pairs.setdefault(t.name[:-7], [None, None])[0] = t
        elif t.name.endswith(".lora_b"):
            pairs.setdefault(t.name[:-7], [None, None])[1] = t
        elif t.name.endswith("_norm.weight"):
            continue  # llama.cpp ignores these
        else:
            raise GGUFError(f"LoRA tensor '{t.name}' has unexpected suffix "
                            f"(expected .lora_a or .lora_b)", h.path)
    return pairs


def validate_adapter(path: str | os.PathLike[str], base: GGUFHeader | None = None) -> GGUFHeader:
    """Check that a file is a LoRA adapter llama.cpp accepts (for ``base`` when given)."""
    h = read_header(path)
    gtype = _str_key(h, "general.type", required=False)
    if gtype != "adapter":
        raise GGUFError(f"is not a LoRA adapter (general.type is "
                        f"{'missing' if gtype is None else repr(gtype)}, expected 'adapter')",
                        h.path)
    arch = _str_key(h, "general.architecture", required=True)
    if base is not None and arch != base.architecture:
        raise GGUFError(f"adapter is for architecture '{arch}' but the model is "
                        f"'{base.architecture}'", h.path)
    atype = _str_key(h, "adapter.type", required=False)
    if atype != "lora":
        raise GGUFError(f"adapter.type is {'missing' if atype is None else repr(atype)}, "
                        f"expected 'lora'", h.path)
    if "adapter.lora.alpha" in _raw_kv(h) and h.kv_types["adapter.lora.alpha"][0] != FLOAT32:
        raise GGUFError("adapter.lora.alpha must be of type f32", h.path)
    key = "adapter.alora.invocation_tokens"
    if key in _raw_kv(h) and h.kv_types[key] != (ARRAY, UINT32):
        raise GGUFError(f"'{key}' must be an array of u32", h.path)
    pairs = _lora_pairs(h)
    _check_compute_types(h)
    if not pairs:
        raise GGUFError("adapter has no lora_a/lora_b tensors", h.path)
    base_tensors = base.tensor_map() if base is not None else {}
    for name in sorted(pairs):  # llama.cpp walks them in name order
        a, b = pairs[name]
        if a is None or b is None:
            half = "lora_a" if a is None else "lora_b"
            raise GGUFError(f"LoRA tensor pair for '{name}' is missing its {half} half", h.path)
        a_ne, b_ne = _ne2(a), _ne2(b)
        if a_ne is None or b_ne is None:
            t = a if a_ne is None else b
            raise GGUFError(f"LoRA tensor '{t.name}' must be 2-D, has shape {list(t.shape)}",
                            h.path)
        is_embd = name.endswith("token_embd.weight")
        if base is not None:
            w = base_tensors.get(name)
            if w is None:
                raise GGUFError(f"LoRA tensor '{name}' does not exist in the base model: "
                                f"adapter made for another base model?", h.path)
            w_ne = w.ne
            if is_embd:
                ok = w_ne[0] == b_ne[1] and w_ne[1] == a_ne[1]
            else:
                ok = w_ne[0] == a_ne[0] and w_ne[1] == b_ne[1]
            if not ok:
                raise GGUFError(
                    f"tensor '{name}' has incorrect shape: adapter made for another base model? "
                    f"(base {list(w.shape)}, lora_a {list(a.shape)}, lora_b {list(b.shape)})",
                    h.path)
        if not is_embd and a_ne[1] != b_ne[0]:
            raise GGUFError(f"LoRA tensor pair '{name}' has inconsistent rank: lora_a "
                            f"{list(a.shape)} vs lora_b {list(b.shape)} (lora_a not transposed?)",
                            h.path)
    return h


def _ne2(t: TensorInfo) -> tuple[int, int] | None:
    """(ne0, ne1) of a tensor that is 2-D in ggml's sense (ne2 == ne3 == 1), else None."""
    shape = t.shape
    if len(shape) == 2:
        return shape  # type: ignore[return-value]
    ne = t.ne
    return (ne[0], ne[1]) if ne[2] == 1 and ne[3] == 1 else None


# ---- summaries ----

def _short_name(base_name: str) -> str:
    parts = base_name.split(".")
    if parts and parts[-1] == "weight":
        parts = parts[:-1]
    if len(parts) >= 3 and parts[0] == "blk" and parts[1].isdigit():
        parts = parts[2:]
    return ".".join(parts)


def adapter_summary(header: GGUFHeader) -> dict[str, object]:
    """alpha, rank (None if it varies), targets (short names like 'attn_q'), task_name,
    architecture of an adapter header."""
    alpha = _value(header, "adapter.lora.alpha", 0.0)
    task = _value(header, "adapter.lora.task_name")
    ranks: set[int] = set()
    targets: list[str] = []
    for t in header.tensors:
        if t.name.endswith(".lora_a"):
            base = t.name[:-7]
            short = _short_name(base)
            if short not in targets:
                targets.append(short)
            if not base.endswith("token_embd.weight"):
                ranks.add(t.ne[1])
    return {
        "alpha": float(alpha) if isinstance(alpha, (int, float)) else 0.0,
        "rank": ranks.pop() if len(ranks) == 1 else None,
        "targets": targets,
        "task_name": task if isinstance(task, str) else None,
        "architecture": header.architecture,
    }


def model_summary(header: GGUFHeader) -> dict[str, object]:
    """A short description of a model header for humans (``llamart info``)."""
    arch = header.architecture
    types: dict[str, int] = {}
    n_params = 0
    for t in header.tensors:
        types[t.type_name] = types.get(t.type_name, 0) + 1
        n_params += t.n_elements

    def arch_key(name: str) -> object:
        return _value(header, f"{arch}.{name}") if arch else None

    name = _value(header, "general.name")
    return {
        "path": header.path,
        "architecture": arch,
        "name": name if isinstance(name, str) else None,
        "version": header.version,
        "n_tensors": len(header.tensors),
        "types": types,
        "context_length": arch_key("context_length"),
        "embedding_length": arch_key("embedding_length"),
        "block_count": arch_key("block_count"),
        "file_type": _value(header, "general.file_type"),
        "n_params": n_params,
        "file_size": header.file_size,
    }
