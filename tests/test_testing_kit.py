"""llamart.testing as a user sees it: the stdlib GGUF writer's files pass the Engine's checks
and load into ``Engine(FakeBackend())``; the writer needs no numpy (this runs in Pyodide too).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llamart import AdapterError, Engine
from llamart.gguf import read_header
from llamart.gguf.model_files import check_adapter, check_model
from llamart.testing import FakeBackend, write_adapter, write_gguf, write_model
from llamart.testing.fake import EOS, byte_tokens
from llamart.testing.gguf_writer import BASE_TENSORS, CHAT_TEMPLATE


def test_a_written_model_passes_the_checks_and_loads(tmp_path: Path) -> None:
    path = write_model(str(tmp_path / "m.gguf"))
    header = check_model(path)
    assert header.kv["general.architecture"] == "llama"
    assert header.kv["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert [(t.name, tuple(t.shape)) for t in header.tensors] == BASE_TENSORS
    fake = FakeBackend()
    with Engine(fake) as engine:
        info = engine.load_model(path, n_ctx=64)
        assert info.path == path and fake.loaded_path == path
        fake.script = byte_tokens(b"hi") + [EOS]
        assert engine.chat([{"role": "user", "content": "q"}]) == "hi"
        assert engine.last_finish_reason == "stop"


def test_a_written_adapter_fits_its_model_or_is_refused(tmp_path: Path) -> None:
    model = write_model(str(tmp_path / "m.gguf"))
    good = write_adapter(str(tmp_path / "a.gguf"), rank=4, alpha=8.0, task="t")
    bad = write_adapter(str(tmp_path / "bad.gguf"), n_in=12)
    assert read_header(good).kv["adapter.lora.alpha"] == 8.0
    check_adapter(good, check_model(model))
    with Engine(FakeBackend()) as engine:
        engine.load_model(model, n_ctx=64)
        assert engine.set_lora(good, 0.5) is True and engine.loras == {good: 0.5}
        assert engine.lora_metadata(good)["task_name"] == "t"
        with pytest.raises(AdapterError):
            engine.set_lora(bad)
        assert engine.loras == {good: 0.5}


def test_write_gguf_value_types(tmp_path: Path) -> None:
    path = write_gguf(str(tmp_path / "kv.gguf"), {"general.architecture": "llama",
                                                  "a.str": "x", "a.f32": 0.5, "a.u32": 7},
                      [("t", (2, 3))])
    header = read_header(path)
    assert (header.kv["a.str"], header.kv["a.f32"], header.kv["a.u32"]) == ("x", 0.5, 7)
    assert [(t.name, tuple(t.shape)) for t in header.tensors] == [("t", (2, 3))]


@pytest.mark.skipif(sys.platform == "emscripten", reason="no subprocess in Pyodide (and no "
                                                         "numpy to hide: this run is the proof)")
def test_the_writer_and_the_fake_need_no_numpy(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['numpy'] = None; sys.modules['gguf'] = None\n"
            "from llamart import Engine\n"
            "from llamart.testing import FakeBackend, write_model\n"
            f"p = write_model({str(tmp_path / 'm.gguf')!r})\n"
            "with Engine(FakeBackend()) as e:\n"
            "    print(e.load_model(p, n_ctx=64).n_vocab)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    assert out.stdout.strip() == "262"
