"""Typed errors rendered as `{"error": code, "detail": ...}` with their HTTP status."""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


class ServiceError(Exception):
    """Base of every business error; subclasses set `status` and `code`."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    message: ClassVar[str] = "Bad request"
    # True when the failure itself must be recorded (e.g. revoking a token family on reuse):
    # the request's session then commits before the error is rendered.
    keeps_changes: ClassVar[bool] = False

    def __init__(self, detail: Any = None, *, headers: dict[str, str] | None = None) -> None:
        self.detail = detail if detail is not None else self.message
        self.headers = headers
        super().__init__(str(self.detail))

    @classmethod
    def response_doc(cls) -> dict[int | str, dict[str, Any]]:
        """For an endpoint's `responses=`: documents this error in OpenAPI."""
        return {cls.status: {"model": ErrorBody, "description": f"`{cls.code}`: {cls.message}"}}


class BadRequest(ServiceError):
    pass


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"
    message = "Authentication required"

    def __init__(self, detail: Any = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer", **(headers or {})})


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"
    message = "Not allowed"


class NotFound(ServiceError):
    status = 404
    code = "not_found"
    message = "Not found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"
    message = "Conflict with the current state"


class TooManyRequests(ServiceError):
    status = 429
    code = "rate_limited"
    message = "Too many requests"

    def __init__(self, retry_after: int, detail: Any = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = max(1, retry_after)


def responses(*errors: type[ServiceError]) -> dict[int | str, dict[str, Any]]:
    """Merge OpenAPI docs of several errors (same status: descriptions joined)."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in errors:
        for status, doc in err.response_doc().items():
            if status in out:
                out[status] = {
                    **out[status],
                    "description": f"{out[status]['description']}; {doc['description']}",
                }
            else:
                out[status] = doc
    return out


def error_response(
    status: int, code: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def install_error_handlers(app: FastAPI) -> None:
    async def on_service_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return error_response(exc.status, exc.code, exc.detail, exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return error_response(422, "validation_error", detail)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "error" if exc.status_code >= 500 else "http_error")
        return error_response(exc.status_code, code, exc.detail, getattr(exc, "headers", None))

    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
