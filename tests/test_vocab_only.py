"""Tokenizer-only loading on llama.cpp's real vocabulary files, against their reference tokens.

The pinned llama.cpp source ships ``models/ggml-vocab-*.gguf`` (vocabularies without tensors)
and, for most, ``.inp``/``.out`` test cases: texts separated by ``\\n__ggml_vocab_test__\\n``
and, one line each, the token ids Hugging Face tokenizers gives for them. As llama.cpp's own
``tests/test-tokenizer-0.cpp`` does, every text is tokenized with add_special=False and
parse_special=False and compared exactly. Runs natively and in Pyodide (the runner makes the
folder visible: mounted in Node, shipped as Blobs in Chromium).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llamart import Engine
from llamart.errors import EngineStateError

SEPARATOR = "\n__ggml_vocab_test__\n"
# vocabularies llama.cpp ships without test cases: loaded and round-tripped only
NO_CASES = ("aquila", "baichuan", "gpt-neox", "nomic-bert-moe")
CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def read_cases(vocab: Path) -> list[tuple[str, list[int]]]:
    """The (text, expected ids) cases of ``vocab``, parsed as test-tokenizer-0.cpp parses them."""
    raw = Path(str(vocab) + ".inp").read_bytes().decode("utf-8")
    texts = raw.split(SEPARATOR)
    if raw.endswith(SEPARATOR):  # the C++ loop stops at the end: no empty last case
        texts.pop()
    lines = Path(str(vocab) + ".out").read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    assert len(texts) == len(lines), f"{vocab.name}: {len(texts)} inputs, {len(lines)} outputs"
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, lines, strict=True)]


def _vocabs(folder: Path, with_cases: bool) -> list[Path]:
    return sorted(p for p in folder.glob("ggml-vocab-*.gguf")
                  if Path(str(p) + ".inp").exists() == with_cases)


@pytest.fixture(scope="module")
def vocab_engine():
    eng = Engine()
    yield eng
    eng.dispose()


def test_every_vocab_file_matches_reference_tokens(llama_cpp_vocab, vocab_engine, record_property):
    vocabs = _vocabs(llama_cpp_vocab, with_cases=True)
    assert len(vocabs) >= 15, [v.name for v in vocabs]  # bert-bge ... starcoder at 0.3.36
    wrong: dict[str, list[str]] = {}
    cases = 0
    for vocab in vocabs:
        info = vocab_engine.load_model(vocab, vocab_only=True)
        assert info.n_vocab > 1000
        for text, expected in read_cases(vocab):
            cases += 1
            got = vocab_engine.tokenize(text, add_special=False, parse_special=False)
            if got != expected:
                wrong.setdefault(vocab.name, []).append(f"{text[:40]!r}: {got[:8]} != "
                                                        f"{expected[:8]}")
    assert not wrong, wrong
    assert cases >= 15 * 46
    record_property("behaviour", f"{len(vocabs)} vocabularies, {cases} cases identical to "
                                 "llama.cpp's reference")


def test_vocab_files_without_cases_load_and_round_trip(llama_cpp_vocab, vocab_engine):
    vocabs = _vocabs(llama_cpp_vocab, with_cases=False)
    assert sorted(v.name.removeprefix("ggml-vocab-").removesuffix(".gguf")
                  for v in vocabs) == sorted(NO_CASES)
    for vocab in vocabs:
        vocab_engine.load_model(vocab, vocab_only=True)
        ids = vocab_engine.tokenize("Hello world, 1234", add_special=False)
        assert ids and all(0 <= i < vocab_engine.model_info.n_vocab for i in ids)
        text = vocab_engine.detokenize(ids)
        assert text.replace(" ", "") == "Helloworld,1234", (vocab.name, text)


def test_weight_calls_say_vocab_only(llama_cpp_vocab, vocab_engine):
    vocab = llama_cpp_vocab / "ggml-vocab-llama-bpe.gguf"
    vocab_engine.load_model(vocab, vocab_only=True)
    ids = vocab_engine.tokenize("Hello world", add_special=False)
    assert ids == [9906, 1917]  # the llama-bpe reference for "Hello world"
    calls = {
        "logits": lambda: vocab_engine.logits(ids),
        "generate": lambda: vocab_engine.generate("Hi", 4),
        "complete": lambda: vocab_engine.complete("Hi", 4),
        "chat": lambda: vocab_engine.chat([{"role": "user", "content": "Hi"}], 4,
                                          chat_template=CHATML),
    }
    for what, call in calls.items():
        with pytest.raises(EngineStateError, match="vocabulary-only") as ei:
            call()
        assert vocab.name in str(ei.value), what
    # the template works without weights (the llama-bpe vocabulary ships none: an override)
    assert vocab_engine.apply_chat_template([{"role": "user", "content": "Hi"}],
                                            chat_template=CHATML) == \
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    # still usable: the vocabulary answers as before
    assert vocab_engine.tokenize("Hello world", add_special=False) == ids
    assert vocab_engine.detokenize(ids) == "Hello world"
