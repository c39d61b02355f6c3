# The one place that pins the llama.cpp source llamart builds against.
# llama.cpp is taken from the llama-cpp-python sdist on PyPI (it vendors the full tree),
# fetched with pip by name, checked against this sha256 and extracted into a cache folder.
set(LLAMART_LLAMA_SDIST_PACKAGE "llama-cpp-python")
set(LLAMART_LLAMA_SDIST_VERSION "0.3.36")
set(LLAMART_LLAMA_SDIST_SHA256 "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e")
# What that sdist carries (for humans and reports): llama.cpp commit 0c1e570, ggml 0.25.3.
set(LLAMART_LLAMA_CPP_COMMIT "0c1e570")
