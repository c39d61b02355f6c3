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


class PerCallLoraEngine:
    """Today's Engine in the parallel engine's call shape: ``lora=`` on generate and chat,
    ``n_parallel`` on load_model, calls from many threads at once (a call waits for the engine,
    which a generation holds until it is closed). It lets the server's runner be tested on the
    path it takes once the parallel engine lands."""

    def __init__(self) -> None:
        from llamart import Engine

        self._engine = Engine()
        self._turn = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def load_model(self, path: Any, *args: Any, n_parallel: int = 1, **kw: Any) -> Any:
        return self._engine.load_model(path, *args, **kw)

    def generate(self, prompt: Any, max_tokens: int = 64, *, lora: Any = None,
                 **kw: Any) -> _Turn:
        return self._hold(lora, lambda: self._engine.generate(prompt, max_tokens, **kw))

    def chat(self, messages: Any, max_tokens: int = 64, *, stream: bool = False,
             lora: Any = None, **kw: Any) -> _Turn:
        assert stream, "the server streams every chat"
        return self._hold(lora, lambda: self._engine.chat(messages, max_tokens, stream=True,
                                                          **kw))

    def _hold(self, lora: Any, start: Any) -> _Turn:
        self._turn.acquire()
        try:
            if lora is not None:
                self._engine.clear_loras()
                for path, scale in lora.items():
                    self._engine.set_lora(path, scale)
            return _Turn(self._turn, start())
        except BaseException:
            self._turn.release()
            raise


class _Turn:
    """A Generation holding its engine until it is closed."""

    def __init__(self, turn: threading.Lock, gen: Any) -> None:
        self._turn, self._gen = turn, gen
        self._holding = True

    def __iter__(self) -> _Turn:
        return self

    def __next__(self) -> str:
        try:
            return next(self._gen)
        except BaseException:
            self.close()
            raise

    def cancel(self) -> bool:
        return self._gen.cancel()

    def close(self) -> None:
        self._gen.close()
        if self._holding:
            self._holding = False
            self._turn.release()

    @property
    def usage(self) -> dict[str, int]:
        return self._gen.usage

    @property
    def finish_reason(self) -> str | None:
        return self._gen.finish_reason
