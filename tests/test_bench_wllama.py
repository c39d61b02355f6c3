"""The wllama comparison's pure parts: the WebAssembly memory parser (which says the module that
ran is memory64) and the report's ratios and targets."""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "emscripten",
                                reason="the benchmark harness runs natively only")


def _section(section_id: int, body: bytes) -> bytes:
    assert len(body) < 128  # one-byte LEB128 size
    return bytes([section_id, len(body)]) + body


def _name(text: str) -> bytes:
    return bytes([len(text)]) + text.encode()


def _module(memory_import_flags: int | None, defined_flags: int | None = None) -> bytes:
    out = b"\0asm\x01\0\0\0"
    out += _section(1, b"\x01\x60\x00\x00")  # one type: () -> ()
    imports = [_name("env") + _name("f") + b"\x00\x00"]  # a function import
    if memory_import_flags is not None:  # initial 0x81 0x01 (129, two LEB bytes), maximum 2
        extra = b"\x02" if memory_import_flags & 1 else b""
        imports.append(_name("env") + _name("memory") + b"\x02"
                       + bytes([memory_import_flags]) + b"\x81\x01" + extra)
    imports.append(_name("env") + _name("g") + b"\x03\x7f\x00")  # a global import
    out += _section(2, bytes([len(imports)]) + b"".join(imports))
    if defined_flags is not None:
        out += _section(5, b"\x01" + bytes([defined_flags]) + b"\x01")
    return out


def test_wasm_memories_reads_the_import_flags() -> None:
    from bench.wllama import wasm_memories

    assert wasm_memories(_module(0x07)) == [
        {"import": "env.memory", "shared": True, "memory64": True}]
    assert wasm_memories(_module(0x03)) == [
        {"import": "env.memory", "shared": True, "memory64": False}]
    assert wasm_memories(_module(None, defined_flags=0x04)) == [
        {"import": None, "shared": False, "memory64": True}]
    assert wasm_memories(_module(None)) == []
    with pytest.raises(ValueError, match="not a WebAssembly binary"):
        wasm_memories(b"GGUF\0\0\0\0")


def test_report_ratios_and_targets_use_the_paired_llamart_run() -> None:
    from bench import wllama_report

    data = {"wllama": {"m": {
        "module": None,
        "llamart": {"1": {"pp_tps": [100.0, 110.0, 90.0], "tg_tps": [50.0]},
                    "2": {"pp_tps": [130.0], "tg_tps": [60.0]}},
        "threads": {"1": {"pp_tps": [20.0], "tg_tps": [10.0]},
                    "2": {"pp_tps": [50.0], "tg_tps": [25.0]}}}}}
    targets = wllama_report.targets(data)
    assert [(t.split("(")[1], m, ok) for t, m, ok in targets] == [
        ("m, 1 thr)", "5.00x", True), ("m, 1 thr)", "5.00x", True),
        ("m, 2 thr)", "2.40x", False), ("m, 2 thr)", "2.60x", True)]
    table = "\n".join(wllama_report.section(data))
    assert "| m | 1 | 20.0 | 10.0 | 100.0 (90.0–110.0) | 50.0 | 5.00x | 5.00x |" in table
    assert "| m | 2 | 50.0 | 25.0 | 130.0 | 60.0 | 2.60x | 2.40x |" in table


def test_report_falls_back_to_the_wasm_section_and_handles_a_missing_llamart() -> None:
    from bench import wllama_report

    wl = {"llamart": {"unavailable": "no WebAssembly build"},
          "threads": {"1": {"pp_tps": [20.0], "tg_tps": [10.0]}}}
    data = {"wllama": {"m": wl}}
    assert [ok for _, _, ok in wllama_report.targets(data)] == [None, None]
    assert "n/a (no WebAssembly build)" in "\n".join(wllama_report.section(data))
    data["wasm"] = {"m": {"model": "m", "systems": {  # the pthreads module at 1 thread
        "Pyodide + Chromium": {"pp_tps": [1.0], "tg_tps": [1.0]},
        "Pyodide + Chromium, threads module, 1 thread": {"pp_tps": [60.0], "tg_tps": [30.0]}}}}
    assert [m for _, m, _ in wllama_report.targets(data)] == ["3.00x", "3.00x"]
    assert "a different run" in "\n".join(wllama_report.section(data))
