"""Test helpers for the HTTP servers: a uvicorn server on a free 127.0.0.1 port in a thread,
and the shipped pirate adapter converted for a base model."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

PIRATE_PEFT = Path(__file__).resolve().parents[2] / "llamart" / "data" / "pirate_lora"


def convert_pirate(base: str | Path, out: Path) -> Path:
    """The shipped PEFT pirate adapter as GGUF for ``base`` (converted once per path)."""
    if not out.exists():
        from llamart.lora import convert

        convert(PIRATE_PEFT, base, out)
    return out


class ServerThread:
    """``app`` served by uvicorn on 127.0.0.1 (a port picked by the OS) until ``stop()``."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="test-uvicorn", daemon=True)

    def start(self, timeout: float = 60.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()

