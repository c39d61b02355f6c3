"""Developer tools: ``python -m tools.soak`` (memory soak test), tools/fuzz_gguf.py."""
