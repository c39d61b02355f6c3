"""A short description of the machine the benchmark ran on."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path


def _first(pattern: str, text: str, default: str = "?") -> str:
    m = re.search(pattern, text, re.M)
    return m.group(1).strip() if m else default


def load_average() -> float:
    """The 1-minute load average (0.0 where unknown)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def describe() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    flags = _first(r"^flags\s*:(.*)$", cpuinfo, "")
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni",
                        "avx_vnni") if f in flags.split()]
    mem_kb = int(_first(r"^MemTotal:\s*(\d+)", meminfo, "0"))
    os_name = "?"
    if Path("/etc/os-release").exists():
        os_name = _first(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text())
    try:
        cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout
        cc = cc.splitlines()[0] if cc else "?"
    except OSError:
        cc = "?"
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        node = "not installed"
    return {
        "cpu": _first(r"^model name\s*:(.*)$", cpuinfo, platform.processor() or "?"),
        "cores": str(os.cpu_count()),
        "simd": " ".join(simd) or "?",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB" if mem_kb else "?",
        "os": f"{os_name}, Linux {platform.release()}",
        "python": sys.version.split()[0],
        "compiler": cc,
        "node": node,
    }
