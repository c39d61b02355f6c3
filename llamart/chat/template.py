"""Chat templates (a model's Jinja ``tokenizer.chat_template``) rendered as transformers does.

The semantics are Hugging Face transformers' ``apply_chat_template`` (``render_jinja_template``):
jinja2's ``ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`` with loop
controls and the ``{% generation %}`` tag, ``tojson`` as ``json.dumps(ensure_ascii=False, ...)``,
``raise_exception``, ``strftime_now``, transformers' ``dict`` and ``namespace``; messages keys that
are None are dropped, reasoning fields aliased, and extra keyword arguments (``tools``,
``documents``, ``enable_thinking``, ``date_string``...) reach the template as variables.

Templates come from untrusted files, so rendering is bounded in time and memory without threads or
signals (it runs the same in Pyodide): attribute access is restricted beyond jinja's sandbox, every
loop iteration, call, operator and filter is counted against a deadline, values and output are
capped in size before they are built, nesting is checked before parsing, and every failure is a
:class:`~llamart.errors.ChatTemplateError` naming the template and line.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext

from ..errors import ChatTemplateError
from .limits import MAX_OUTPUT_CHARS, MAX_SOURCE_CHARS, Budget, LimitExceeded, budget_var
from .sandbox import sandbox_environment
from .transformers import TemplateRaised, plain_data, template_messages

__all__ = ["ChatTemplate", "ChatTemplateError", "render_chat_template"]


_TEMPLATE_FILE = "<template>"


def _template_line(exc: BaseException) -> int | None:
    """The template line an error was raised at (jinja rewrites tracebacks to template lines)."""
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == _TEMPLATE_FILE:
            line = frame.lineno
    return line


def _error(name: str, exc: BaseException, stage: str) -> ChatTemplateError:
    lineno = _template_line(exc)
    if isinstance(exc, (TemplateRaised, LimitExceeded, jinja2.TemplateError)):
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, TemplateRaised):
            reason = f"the template raised: {reason}"
        elif isinstance(exc, jinja2.exceptions.SecurityError):
            reason = f"refused by the sandbox: {reason}"
    elif isinstance(exc, RecursionError):
        reason = "nested too deeply (recursion limit)"
    elif isinstance(exc, MemoryError):
        reason = "out of memory"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    where = f", line {lineno}" if lineno else ""
    return ChatTemplateError(f"chat template of {name}{where}: {stage} failed: {reason}",
                             template=name, lineno=lineno, reason=reason)


@lru_cache(maxsize=32)
def _compile(source: str) -> jinja2.Template:
    """The compiled template (cached by source); errors propagate (the caller names them)."""
    env = sandbox_environment()
    token = budget_var.set(Budget())
    try:
        code = env.compile(source, filename=_TEMPLATE_FILE)
        return env.template_class.from_code(env, code, env.make_globals(None), None)
    finally:
        budget_var.reset(token)


class ChatTemplate:
    """A compiled chat template; :meth:`render` formats a conversation into a prompt.

    ``name`` (the model's file name, say) appears in every error. Compiling is cached by source.
    Raises ChatTemplateError when the template does not compile.
    """

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "",
                 name: str = "<template>"):
        if not isinstance(source, str):
            raise TypeError(f"a chat template is a string, got {type(source).__name__}")
        self.source = source
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        if len(source) > MAX_SOURCE_CHARS:
            raise ChatTemplateError(f"chat template of {name}: larger than {MAX_SOURCE_CHARS:,} "
                                    f"characters", template=name, reason="template too large")
        try:
            self._template = _compile(source)
        except Exception as e:  # untrusted input: any failure is the template's
            raise _error(name, e, "compiling") from None

    def render(self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True,
               **kwargs: Any) -> str:
        """The prompt for ``messages`` (transformers' ``apply_chat_template(tokenize=False)``).

        ``kwargs`` become template variables (``tools``, ``documents``, ``enable_thinking``,
        ``date_string``...; ``tools`` and ``documents`` default to None as in transformers);
        ``bos_token``/``eos_token`` default to the constructor's. Raises ChatTemplateError.
        """
        variables = {"bos_token": self.bos_token, "eos_token": self.eos_token,
                     "tools": None, "documents": None}
        variables.update(plain_data(kwargs))
        variables["messages"] = template_messages(messages)
        variables["add_generation_prompt"] = add_generation_prompt
        token = budget_var.set(Budget())
        try:
            chunks: list[str] = []
            total = 0
            for chunk in self._template.generate(**variables):
                total += len(chunk)
                if total > MAX_OUTPUT_CHARS:
                    raise LimitExceeded(f"the prompt would exceed {MAX_OUTPUT_CHARS:,} "
                                         f"characters")
                chunks.append(chunk)
            return "".join(chunks)
        except Exception as e:  # untrusted template: any failure is the template's
            raise _error(self.name, e, "rendering") from None
        finally:
            budget_var.reset(token)


def render_chat_template(source: str, messages: Sequence[Mapping[str, Any]], *,
                         add_generation_prompt: bool = True, bos_token: str = "",
                         eos_token: str = "", name: str = "<template>", **kwargs: Any) -> str:
    """One-call form of ``ChatTemplate(source, ...).render(messages, ...)``."""
    return ChatTemplate(source, bos_token=bos_token, eos_token=eos_token, name=name).render(
        messages, add_generation_prompt=add_generation_prompt, **kwargs)
