"""Run one measurement in its own child process and read its peak resident memory."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field


class BenchError(RuntimeError):
    """A child measurement failed; the message carries its command and output."""


@dataclass
class ChildRun:
    stdout: str
    stderr_lines: list[tuple[float, str]] = field(default_factory=list)  # (seconds, line)
    maxrss_mb: float = 0.0
    wall_s: float = 0.0

    def result(self) -> dict:
        """The ``BENCH-RESULT {json}`` line a worker printed."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("BENCH-RESULT "):
                return json.loads(line[len("BENCH-RESULT "):])
        raise BenchError("no BENCH-RESULT line in the child's output:\n" + self.stdout[-2000:]
                         + "\n".join(t for _, t in self.stderr_lines[-20:]))


def run_child(cmd: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
              timeout: float = 900.0) -> ChildRun:
    """Run ``cmd``; stderr lines are timestamped (seconds since start) as they arrive; the
    peak RSS comes from the kernel's rusage of the reaped child (``wait4``)."""
    started = time.perf_counter()
    child_env = {**os.environ, **(env or {})}
    # Python children run as an installed package would: with their bytecode cache
    child_env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                            env=child_env, text=True)
    lines: list[tuple[float, str]] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.perf_counter() - started, line.rstrip("\n")))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read()
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(5)
    run = ChildRun(out, lines, usage.ru_maxrss / 1024.0, time.perf_counter() - started)
    if proc.returncode != 0:
        tail = "\n".join(t for _, t in lines[-30:])
        raise BenchError(f"{' '.join(cmd[:3])} ... exited with {proc.returncode}:\n{tail}")
    return run
