"""Test helpers for code built on llamart.

- :class:`FakeBackend` (``llamart.testing.fake``): a pure-Python Backend double,
  ``Engine(FakeBackend())``; stdlib only, so it also runs in Pyodide.
- ``llamart.testing.models``: tiny GGUF models, LoRA adapters and broken files made on the spot
  (needs numpy and the ``gguf`` package; native only); ``llamart.testing.fixtures`` writes the
  set llamart's own suite uses; ``llamart.testing.mutate``: byte-level edits of GGUF headers
  (pure Python; the broken-file makers use it); ``llamart.testing.hf_llama``: a Hugging Face
  convention reference llama (numpy forward pass) and PEFT folders (also needs safetensors).

Nothing here is imported by ``llamart`` itself.
"""

from .fake import FakeBackend

__all__ = ["FakeBackend"]
