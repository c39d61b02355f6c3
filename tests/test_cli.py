"""The command line's pure-Python parts (``llamart generate / info / lora inspect``), with
the Engine on a FakeBackend.

Tested against llamart.testing.FakeBackend (pure Python): no numpy, gguf or llama.cpp,
so this file runs unchanged in Pyodide. The fixtures (``fake``, ``fake_files``,
``fake_engine``, ``fake_loaded``) are in tests/conftest.py.
"""

from __future__ import annotations

import pytest

from llamart import (
    Engine,
    GenerationParams,
)
from llamart.testing.fake import EOS, N_VOCAB, FakeBackend, byte_tokens

# ---- the command line (pure Python parts; the engine is the fake) ----

@pytest.fixture
def cli_fake(monkeypatch: pytest.MonkeyPatch):
    from llamart import cli

    fake = FakeBackend()
    monkeypatch.setattr(cli, "_engine", lambda backend: Engine(fake))
    return cli, fake


def test_cli_lora_arg() -> None:
    from llamart.cli import _lora_arg

    assert _lora_arg("a.gguf") == ("a.gguf", 1.0)
    assert _lora_arg("a.gguf:0.5") == ("a.gguf", 0.5)
    assert _lora_arg("dir:x/a.gguf:-2") == ("dir:x/a.gguf", -2.0)
    assert _lora_arg("C:\\a.gguf") == ("C:\\a.gguf", 1.0)


def test_cli_generate(cli_fake, fake_files, capsys) -> None:
    cli, fake = cli_fake
    fake.script = byte_tokens(b"abcdef")
    rc = cli.main(["generate", fake_files["model"], "hi", "--lora", f"{fake_files['a']}:0.5",
                   "--lora", fake_files["b"], "--max-tokens", "3", "--seed", "5", "-v"])
    out, err = capsys.readouterr()
    assert rc == 0 and out == "abc\n" and "[finish: length" in err
    applied = [a[0] for n, a in fake.calls if n == "apply_adapters"]
    assert applied[-2:] == [[(fake_files["a"], 0.5), (fake_files["b"], 1.0)], []]  # then unloaded
    assert fake.seed == 5 and fake.disposed


def test_cli_generate_lora_unsupported_warns(cli_fake, fake_files, capsys) -> None:
    cli, fake = cli_fake
    fake.lora = False
    fake.script = byte_tokens(b"ok")
    assert cli.main(["generate", fake_files["model"], "hi", "--lora", fake_files["a"],
                     "--max-tokens", "2"]) == 0
    out, err = capsys.readouterr()
    assert out == "ok\n" and "llamart: warning: LoRA adapters are not applied" in err


def test_cli_errors(cli_fake, fake_files, capsys) -> None:
    cli, _ = cli_fake
    assert cli.main(["generate", fake_files["missing"], "hi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("llamart: error: ") and fake_files["missing"] in err
    assert cli.main(["generate", fake_files["model"], "hi", "--lora", fake_files["bad_shape"]]) == 1
    assert "incorrect shape" in capsys.readouterr().err
    assert cli.main(["generate", fake_files["model"], "hi", "--temperature", "-1"]) == 1
    assert "temperature" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:
        cli.main(["generate", fake_files["model"]])
    assert ei.value.code == 2


def test_cli_info(cli_fake, fake_files, capsys) -> None:
    cli, _ = cli_fake
    assert cli.main(["info", fake_files["model"]]) == 0
    out = capsys.readouterr().out
    assert "architecture: llama" in out and "parameters:   4,242" in out
    assert "general.name = fake" in out
    assert cli.main(["info", "--no-load", fake_files["model"]]) == 0
    out = capsys.readouterr().out
    assert "tensors:" in out and "4 (F32 x4)" in out and "general.type = model" in out
    assert cli.main(["info", "--json", fake_files["model"]]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["n_vocab"] == N_VOCAB
    assert cli.main(["info", fake_files["garbage"]]) == 1
    assert "not a GGUF file" in capsys.readouterr().err


def test_cli_lora_inspect(fake_files, capsys) -> None:
    import json

    from llamart.cli import main

    assert main(["lora", "inspect", fake_files["a"], "--base", fake_files["model"]]) == 0
    out = capsys.readouterr().out
    for line in ("alpha:        4.0", "rank:         2", "targets:      attn_q, attn_v",
                 "task name:    domain", "fits base:    yes"):
        assert line in out
    assert main(["lora", "inspect", fake_files["bad_shape"], "--base", fake_files["model"]]) == 1
    out = capsys.readouterr().out
    assert "fits base:    no: tensor 'blk.0.attn_q.weight' has incorrect shape" in out
    assert main(["lora", "inspect", fake_files["bad_arch"], "--base", fake_files["model"],
                 "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["fits"] is False and "gpt2" in data["reason"] and data["valid"] is True
    assert main(["lora", "inspect", fake_files["b"]]) == 0
    assert "fits base" not in capsys.readouterr().out
    assert main(["lora", "inspect", fake_files["model"]]) == 1
    assert "valid:        no: is not a LoRA adapter" in capsys.readouterr().out
    assert main(["lora", "inspect", fake_files["garbage"]]) == 1
    assert "llamart: error:" in capsys.readouterr().err


# ---- every entry point takes every sampling option ----

def test_cli_sampling_options_come_from_the_params(cli_fake, fake_files, capsys) -> None:
    import dataclasses

    cli, fake = cli_fake
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    help_text = capsys.readouterr().out
    for f in dataclasses.fields(GenerationParams):
        assert "--" + f.name.replace("_", "-") in help_text
        assert f.metadata["help"].split()[0] in help_text
    fake.script = byte_tokens(b"abcdef")
    rc = cli.main(["generate", fake_files["model"], "hi", "--max-tokens", "4", "--temperature",
                   "0.5", "--top-k", "3", "--top-p", "0.9", "--min-p", "0.1",
                   "--repeat-penalty", "1.2", "--repeat-last-n", "9", "--seed", "4",
                   "--stop", "cd", "--stop", "zz"])
    assert rc == 0 and capsys.readouterr().out == "ab\n"
    assert fake.sampler == GenerationParams(max_tokens=4, temperature=0.5, top_k=3, top_p=0.9,
                                            min_p=0.1, repeat_penalty=1.2, repeat_last_n=9,
                                            seed=4, stop=("cd", "zz"))
    assert cli.main(["generate", fake_files["model"], "hi", "--repeat-last-n", "-2"]) == 1
    assert "repeat_last_n" in capsys.readouterr().err


def test_cli_chat_streams(cli_fake, fake_files, capsys) -> None:
    cli, fake = cli_fake
    fake.script = byte_tokens(b"Hi!") + [EOS]
    assert cli.main(["generate", fake_files["model"], "hello", "--chat", "-v"]) == 0
    out, err = capsys.readouterr()
    assert out == "Hi!\n" and "[finish: stop" in err
    text, _add, _parse = [a for n, a in fake.calls if n == "tokenize"][-1]
    assert text == "<s>user: hello</s><s>assistant: "
