"""llamart's own test harnesses (not shipped in the package; only the suite uses them).

- ``tests.support.platform_support``: what the Python running the tests can do (threads; a
  coroutine runner that works where the event loop cannot block, as in Pyodide).
- ``tests.support.hf_llama``: a Hugging Face convention reference llama (numpy forward pass)
  and PEFT folders (also needs safetensors).

What tools/ and users need for their tests ships in :mod:`llamart.testing` (the fake backend,
GGUF writers, the fixture set, GGUF header mutations).
"""
