"""llamart's own test harnesses (not shipped in the package; the suite, tools/ and bench/ use them).

- ``tests.support.fixtures``: writes the fixture set the suite uses
  (``python -m tests.support.fixtures OUTDIR``; needs numpy and the ``gguf`` package).
- ``tests.support.mutate``: byte-level edits of GGUF headers (pure Python, also in Pyodide).
- ``tests.support.hf_llama``: a Hugging Face convention reference llama (numpy forward pass)
  and PEFT folders (also needs safetensors).

What users need for their own tests ships in :mod:`llamart.testing`.
"""
