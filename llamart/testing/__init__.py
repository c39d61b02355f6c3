"""Test helpers for code built on llamart.

- :class:`FakeBackend` (``llamart.testing.fake``): a pure-Python Backend double,
  ``Engine(FakeBackend())``; stdlib only, so it also runs in Pyodide.
- ``llamart.testing.gguf_writer``: tiny valid GGUF model and adapter files written with the
  standard library (:func:`write_model`, :func:`write_adapter`; also in Pyodide), which
  ``Engine(FakeBackend())`` loads and the Engine's GGUF checks accept.
- ``llamart.testing.models``: tiny GGUF models, LoRA adapters and broken files made on the spot
  (needs numpy and the ``gguf`` package; native only).

- ``llamart.testing.mutate``: byte-level edits of GGUF headers that make them lie (inflated
  counts, lengths, dims, types); stdlib only.
- ``llamart.testing.fixtures``: the fixture set llamart's own suite, fuzzers and soak use
  (``python -m llamart.testing.fixtures OUTDIR`` writes it with a manifest; numpy and ``gguf``).

Nothing here is imported by ``llamart`` itself. The Hugging Face reference llama stays in the
checkout's ``tests/support/``.
"""

from .fake import FakeBackend
from .gguf_writer import write_adapter, write_gguf, write_model

__all__ = ["FakeBackend", "write_adapter", "write_gguf", "write_model"]
