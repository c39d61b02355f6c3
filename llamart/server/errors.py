"""Every failure the server reports, in OpenAI's envelope: the one place errors get a status.

``{"error": {"message", "type", "param", "code"}}``. Handlers installed by
:func:`install_error_handlers` turn APIError, FastAPI's validation errors, llamart's exceptions
and anything unexpected into that envelope; a stack trace never reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    AdapterError,
    ChatTemplateError,
    ContextOverflowError,
    EngineStateError,
    LlamartError,
    UnsupportedCapabilityError,
)

log = logging.getLogger("llamart.server")

__all__ = ["APIError", "error_body", "from_exception", "install_error_handlers"]

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
          503: "service_unavailable_error"}


class APIError(Exception):
    """An error response: HTTP ``status`` with an OpenAI error object."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "server_error" if self.status >= 500 else
                          "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(message: str, type_: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def from_exception(exc: BaseException, param: str | None = None) -> APIError:
    """The APIError for an exception raised by the engine or the request's own checks."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ContextOverflowError):
        return APIError(400, str(exc), param=param or "messages", code="context_length_exceeded")
    if isinstance(exc, AdapterError):
        return APIError(400, str(exc), param=param or "lora_path", code="invalid_adapter")
    if isinstance(exc, (ChatTemplateError, UnsupportedCapabilityError)):
        return APIError(400, str(exc), param=param)
    if isinstance(exc, (ValueError, TypeError)):  # argument checks (GrammarError is one)
        return APIError(400, str(exc), param=param)
    if isinstance(exc, FileNotFoundError):
        return APIError(400, f"{exc.filename}: no such file", param=param or "lora_path")
    if isinstance(exc, EngineStateError):
        return APIError(503, f"the engine is busy or not ready: {exc}",
                        headers={"Retry-After": "1"})
    if isinstance(exc, LlamartError):
        log.error("engine error: %s", exc)
        return APIError(500, f"the engine failed: {exc}", code="engine_error")
    log.error("unexpected error", exc_info=exc)
    return APIError(500, "internal server error (see the server log)", code="internal_error")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    if first.get("type") == "json_invalid":
        return f"malformed JSON body: {first.get('msg', '')}", None
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid value")
    return (f"{param}: {msg}" if param else f"the body must be a JSON object: {msg}"), param


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception of ``app`` through :func:`from_exception` (and log it)."""

    @app.exception_handler(APIError)
    async def _api(request: Request, exc: APIError) -> JSONResponse:
        request.state.error = exc.message
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        request.state.error = message
        return APIError(400, message, param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = APIError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
        return err.response()

    @app.exception_handler(Exception)
    async def _other(request: Request, exc: Exception) -> JSONResponse:
        err = from_exception(exc)
        request.state.error = err.message
        return err.response()
