"""The C API's enum constants, generated from backends/llamart.h by
``python -m llamart.bindings._cdefs``: do not edit (tests/test_c_api.py checks it).
"""

LM_OK = 0
LM_ERR_ARG = -1
LM_ERR_CONTEXT = -2
LM_ERR_DECODE = -3
LM_ERR_ALLOC = -4
LM_ERR_BUFFER = -5
LM_ERR_STATE = -7
LM_ERR_UNSUPPORTED = -8
LM_ERR_GRAMMAR = -9
LM_EOG = 1
LM_CANCELLED = 2
LM_CAP_LORA = 1
LM_CAP_THREADS = 2
LM_CAP_MMAP = 4
LM_CAP_EMBEDDINGS = 8
LM_CAP_GRAMMAR = 16
LM_CAP_JSON_SCHEMA = 32
LM_POOLING_MODEL = -1
LM_POOLING_MEAN = 1
LM_POOLING_CLS = 2
LM_POOLING_LAST = 3
