"""Facts of the GGUF format and of ggml's tensor types: magic, limits, value and tensor types.

The values follow ggml at the pinned llama.cpp commit (ggml/include/gguf.h, ggml/src/gguf.cpp,
ggml.c's type_traits); tests/test_gguf_reader.py checks the type table against gguf-py's.
"""

from __future__ import annotations

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
SCALARS: dict[int, tuple[str, int, str]] = {
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
