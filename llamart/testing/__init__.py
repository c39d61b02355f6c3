"""Test helpers for code built on llamart.

- :class:`FakeBackend` (``llamart.testing.fake``): a pure-Python Backend double,
  ``Engine(FakeBackend())``; stdlib only, so it also runs in Pyodide.
- ``llamart.testing.gguf_writer``: tiny valid GGUF model and adapter files written with the
  standard library (:func:`write_model`, :func:`write_adapter`; also in Pyodide), which
  ``Engine(FakeBackend())`` loads and the Engine's GGUF checks accept.
- ``llamart.testing.models``: tiny GGUF models, LoRA adapters and broken files made on the spot
  (needs numpy and the ``gguf`` package; native only).

Nothing here is imported by ``llamart`` itself. llamart's own harnesses (its fixture set, GGUF
header mutations, the Hugging Face reference llama) live in the checkout's ``tests/support/``.
"""

from .fake import FakeBackend
from .gguf_writer import write_adapter, write_gguf, write_model

__all__ = ["FakeBackend", "write_adapter", "write_gguf", "write_model"]
