"""llamart on Ray Serve (llamart/serve_ray.py): a real single-node Ray, two replicas, the real
``openai`` client through Ray's HTTP proxy.

Ray's ``_local_testing_mode`` cannot test this: it has no HTTP proxy, no replica context
(``get_multiplexed_model_id()`` is '' and a ``@serve.multiplexed`` loader raises) and no
routing, so one real cluster is started for the module (~12 s up and down, ~1.1 GB).
References: replies of an Engine driven directly in this process (greedy), and the replica
each response names (``x-llamart-replica``) for routing. Skips when ray[serve], FastAPI or
openai (requirements-dev.txt) or the real model are missing.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

if sys.platform == "emscripten":
    pytest.skip("Ray Serve runs natively only", allow_module_level=True)
for _mod in ("ray.serve", "fastapi", "openai"):
    pytest.importorskip(_mod, reason=f"{_mod} missing: pip install -r requirements-dev.txt")

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # 2.60 writes ~/.ray/auth_token otherwise

import openai  # noqa: E402
import ray  # noqa: E402
from ray import serve  # noqa: E402

from llamart import Engine  # noqa: E402
from llamart.serve_ray import REPLICA_HEADER, build_app  # noqa: E402
from tests.support.serving import convert_pirate  # noqa: E402

N_CTX = 512
GREEDY: dict[str, Any] = {"temperature": 0.0, "seed": 1}
SKY = [{"role": "user", "content": "Why is the sky blue?"}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files(real_model: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
          ) -> dict[str, Path]:
    model = Path(real_model("smollm2"))
    pirate = convert_pirate(model, tmp_path_factory.mktemp("ray") / "pirate.gguf")
    return {"model": model, "pirate": pirate}


@pytest.fixture(scope="module")
def url(files: dict[str, Path]) -> Iterator[str]:
    env = {k: os.environ[k] for k in ("PYTHONPATH", "LLAMART_LIB_DIR", "GGML_NO_BACKTRACE",
                                      "RAY_AUTH_MODE") if k in os.environ}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env},
             log_to_driver=False)
    try:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({
            "model": str(files["model"]), "alias": "smollm2", "n_ctx": N_CTX, "n_threads": 1,
            "parallel": 2, "num_replicas": 2, "num_cpus": 1, "max_adapters": 2,
            "lora": [f"pirate={files['pirate']}:0.75", f"loud={files['pirate']}:1.0"]}),
            route_prefix="/", name="llamart")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def reference(files: dict[str, Path]) -> Iterator[Engine]:
    with Engine() as eng:
        eng.load_model(files["model"], n_ctx=N_CTX, n_threads=1)
        yield eng


def ask(client: openai.OpenAI, model: str, header: bool = True) -> tuple[str, str]:
    """The greedy reply to SKY from ``model`` and the replica that answered."""
    headers = {"serve_multiplexed_model_id": model} if header and model != "smollm2" else {}
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=SKY, max_tokens=12, extra_headers=headers, **GREEDY)
    return raw.parse().choices[0].message.content, raw.headers[REPLICA_HEADER]


def reference_reply(eng: Engine, loras: dict[str, float]) -> str:
    eng.clear_loras()
    for path, scale in loras.items():
        eng.set_lora(path, scale)
    try:
        return eng.chat(SKY, 12, **GREEDY)
    finally:
        eng.clear_loras()


def test_replies_through_rays_proxy(client: openai.OpenAI, reference: Engine,
                                    files: dict[str, Path]) -> None:
    models = {m.id: m.model_extra["parent"] for m in client.models.list().data}
    assert models == {"smollm2": None, "pirate": "smollm2", "loud": "smollm2"}
    pirate = str(files["pirate"])
    assert ask(client, "smollm2")[0] == reference_reply(reference, {})
    assert ask(client, "pirate")[0] == reference_reply(reference, {pirate: 0.75})
    assert ask(client, "loud")[0] == reference_reply(reference, {pirate: 1.0})
    assert ask(client, "smollm2")[0] == reference_reply(reference, {})  # base stays base
    with pytest.raises(openai.NotFoundError):
        ask(client, "nope")


def test_adapter_requests_land_on_the_replica_holding_it(client: openai.OpenAI) -> None:
    holder = {name: ask(client, name)[1] for name in ("pirate", "loud")}  # one warm-up each
    time.sleep(1.5)  # replicas report the ids they hold every ~0.5 s
    for _ in range(4):
        for name in ("pirate", "loud"):
            assert ask(client, name)[1] == holder[name], name
    base = {ask(client, "smollm2")[1] for _ in range(12)}
    assert len(base) == 2  # no id: spread over both replicas


def test_evicted_adapter_waits_for_its_running_requests() -> None:
    """Ray's eviction (``__del__``, maybe twice) releases an adapter once, and only after the
    requests using it end (no cluster needed)."""
    from llamart.serve_ray import HeldAdapter
    from llamart.server import AdapterSpec, ServerConfig
    from llamart.server.adapters import AdapterRegistry

    released: list[str] = []
    registry = AdapterRegistry(ServerConfig(model="base.gguf",
                                            adapters=(AdapterSpec("a", "a.gguf"),)),
                               released.append)
    held = HeldAdapter("a", registry)
    with registry.lease(["a"]):
        held.__del__()  # evicted while a request runs with it
        held.__del__()
        assert released == []
    assert released == ["a.gguf"]
    assert registry.get("a") is not None  # still served: the next request holds it again
