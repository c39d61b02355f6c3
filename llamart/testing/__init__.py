"""Test helpers: tiny GGUF models and LoRA adapters made on the spot, and bad files.

``llamart.testing.models`` needs numpy and the ``gguf`` package, ``hf_llama`` (a Hugging Face
convention reference llama and PEFT folders) also ``safetensors`` (native only);
``llamart.testing.mutate`` is pure Python (byte-level edits of existing GGUF files) and also
runs in Pyodide.  Nothing here is imported by ``llamart`` itself.
"""
