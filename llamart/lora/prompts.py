"""Golden prompt files for ``llamart lora compare``: plain text or JSONL chats.

- A text file holds one prompt per line (blank lines are skipped; the line is the prompt as is).
- A JSONL file (``.jsonl``, or any file whose first non-blank line starts with ``{``) holds one
  JSON object per line: ``{"messages": [{"role": ..., "content": ...}, ...]}`` (a chat, rendered
  through the model's chat template) or ``{"prompt": "..."}`` (a plain text prompt), each with
  an optional ``"name"``.

Every problem is a :class:`PromptFileError` naming the file, the line and the reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_KEYS = {"messages", "prompt", "name"}


class PromptFileError(ValueError):
    """A prompt or reference text file cannot be used; reads ``"<path>: [line N: ]<reason>"``."""

    def __init__(self, path: str, reason: str, line: int | None = None) -> None:
        where = f"{path}: line {line}: " if line is not None else f"{path}: "
        super().__init__(where + reason)
        self.path = path
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class GoldenPrompt:
    """One prompt of a set: ``text`` (plain) or ``messages`` (a chat), from ``line`` of a file."""

    set: str
    line: int
    text: str | None = None
    messages: tuple[Mapping[str, str], ...] | None = None
    name: str | None = None
    source: str = ""  # the file it came from

    @property
    def kind(self) -> str:
        return "chat" if self.messages is not None else "text"

    @property
    def label(self) -> str:
        """A short human label: the name, else the text or the last message's content."""
        if self.name:
            return self.name
        if self.messages is not None:
            return self.messages[-1]["content"]
        return self.text or ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"set": self.set, "file": self.source, "line": self.line,
                               "kind": self.kind}
        if self.name:
            out["name"] = self.name
        if self.messages is not None:
            out["messages"] = [dict(m) for m in self.messages]
        else:
            out["text"] = self.text
        return out


def read_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """A UTF-8 text file's contents; clear errors for binary, non-UTF-8 or empty files."""
    spath = os.fspath(path)
    with open(spath, "rb") as f:
        data = f.read()
    if b"\0" in data:
        raise PromptFileError(spath, f"not a text {what} (it contains NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise PromptFileError(spath, f"not UTF-8 text (invalid byte at offset {e.start})") from e
    if not text.strip():
        raise PromptFileError(spath, f"the {what} is empty")
    return text


def _messages(path: str, line: int, value: Any) -> tuple[Mapping[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise PromptFileError(path, "'messages' must be a non-empty list of "
                              "{\"role\": ..., \"content\": ...} objects", line)
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise PromptFileError(path, f"messages[{i}] must be an object, "
                                  f"not {type(m).__name__}", line)
        for key in ("role", "content"):
            if not isinstance(m.get(key), str):
                problem = "is missing" if key not in m else "must be a string"
                raise PromptFileError(path, f"messages[{i}]['{key}'] {problem}", line)
        if not m["role"]:
            raise PromptFileError(path, f"messages[{i}]['role'] is empty", line)
        extra = sorted(set(m) - {"role", "content"})
        if extra:
            raise PromptFileError(path, f"messages[{i}] has unknown keys {extra}", line)
        out.append({"role": m["role"], "content": m["content"]})
    return tuple(out)


def _jsonl_prompt(path: str, set_name: str, line: int, raw: str) -> GoldenPrompt:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise PromptFileError(path, f"not valid JSON ({e.msg} at column {e.colno})", line) from e
    if not isinstance(obj, dict):
        raise PromptFileError(path, f"each line must be a JSON object, not "
                              f"{type(obj).__name__}", line)
    extra = sorted(set(obj) - _KEYS)
    if extra:
        raise PromptFileError(path, f"unknown keys {extra} (expected 'messages' or 'prompt', "
                              f"and optionally 'name')", line)
    name = obj.get("name")
    if name is not None and not isinstance(name, str):
        raise PromptFileError(path, "'name' must be a string", line)
    if ("messages" in obj) == ("prompt" in obj):
        raise PromptFileError(path, "give exactly one of 'messages' (a chat) or 'prompt' "
                              "(plain text)", line)
    if "prompt" in obj:
        text = obj["prompt"]
        if not isinstance(text, str) or not text.strip():
            raise PromptFileError(path, "'prompt' must be a non-empty string", line)
        return GoldenPrompt(set_name, line, text=text, name=name, source=path)
    return GoldenPrompt(set_name, line, messages=_messages(path, line, obj["messages"]),
                        name=name, source=path)


def load_prompts(path: str | os.PathLike[str], set_name: str | None = None
                 ) -> list[GoldenPrompt]:
    """The prompts of one file (a prompt set named ``set_name``, default the file's stem)."""
    spath = os.fspath(path)
    text = read_text(spath, "prompt file")
    name = set_name or os.path.splitext(os.path.basename(spath))[0]
    lines = [(i + 1, ln.rstrip("\r")) for i, ln in enumerate(text.split("\n"))]
    lines = [(i, ln) for i, ln in lines if ln.strip()]
    jsonl = spath.lower().endswith(".jsonl") or lines[0][1].lstrip().startswith("{")
    if jsonl:
        return [_jsonl_prompt(spath, name, i, ln) for i, ln in lines]
    return [GoldenPrompt(name, i, text=ln, source=spath) for i, ln in lines]
