"""Typed errors rendered as `{"error": code, "detail": ...}` with their HTTP status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

# A 422 lists at most this many problems (a huge invalid body must not make a huger answer).
MAX_VALIDATION_ERRORS = 20


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ServiceError(Exception):
    """Base of every business error; subclasses set `status` and `code`."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    message: ClassVar[str] = "Bad request"
    # True when the failure itself must be recorded (e.g. revoking a token family on reuse):
    # the request's session then commits before the error is rendered.
    keeps_changes: ClassVar[bool] = False

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        self.detail: Any = detail if detail is not None else self.message
        self.headers = headers
        super().__init__(str(self.detail))

    # What `detail` holds, for OpenAPI.
    detail_type: ClassVar[Any] = str

    @classmethod
    def body_model(cls) -> type[BaseModel]:
        """The body of this error as OpenAPI shows it: `error` is the literal code."""
        model = _BODY_MODELS.get(cls)
        if model is None:
            model = create_model(
                cls.__name__,
                __doc__=f"`{cls.code}`: {cls.message}",
                error=(Literal[cls.code], ...),  # type: ignore[arg-type]
                detail=(cls.detail_type, ...),
            )
            _BODY_MODELS[cls] = model
            _ERROR_OF_MODEL[model] = cls
        return model

    @classmethod
    def response_doc(cls) -> dict[int | str, dict[str, Any]]:
        """For an endpoint's `responses=`: documents this error in OpenAPI."""
        return responses(cls)


_BODY_MODELS: dict[type[ServiceError], type[BaseModel]] = {}
_ERROR_OF_MODEL: dict[type[BaseModel], type[ServiceError]] = {}


class BadRequest(ServiceError):
    pass


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"
    message = "Authentication required"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
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

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = max(1, retry_after)


class ServiceUnavailable(ServiceError):
    """Temporarily unable to serve; the client retries after `Retry-After` seconds."""

    status = 503
    code = "unavailable"
    message = "Temporarily unavailable; retry shortly"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class ValidationFailed(ServiceError):
    """What FastAPI's request validation answers (rendered by `install_error_handlers`)."""

    status = 422
    code = "validation_error"
    message = "The request does not match the schema"
    detail_type = list[ValidationIssue]


class Unprocessable(ServiceError):
    """Well-formed, but against a business rule (422 with a text detail, unlike
    `ValidationFailed`'s list of schema issues)."""

    status = 422
    code = "unprocessable"
    message = "The request breaks a rule"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"
    message = "The request body is over this route's limit"


class Overloaded(ServiceUnavailable):
    code = "overloaded"
    message = "The service is busy; retry after the Retry-After seconds"


def responses(*errors: type[ServiceError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for these errors: per status, the body of each possible error."""
    by_status: dict[int, list[type[ServiceError]]] = {}
    for err in errors:
        found = by_status.setdefault(err.status, [])
        if err not in found:
            found.append(err)
    out: dict[int | str, dict[str, Any]] = {}
    for status, errs in sorted(by_status.items()):
        models = [e.body_model() for e in sorted(errs, key=lambda e: e.code)]
        out[status] = {
            "model": models[0] if len(models) == 1 else Union[tuple(models)],  # noqa: UP007
            "description": "; ".join(f"`{e.code}`: {e.message}" for e in errs),
        }
    return out


def errors_in(doc: dict[str, Any]) -> list[type[ServiceError]]:
    """The errors a `responses(...)` entry documents (the reverse of `responses`)."""
    model = doc.get("model")
    members = getattr(model, "__args__", None) or (model,)
    return [_ERROR_OF_MODEL[m] for m in members if m in _ERROR_OF_MODEL]


F = TypeVar("F", bound=Callable[..., Any])


def raises(*errors: type[ServiceError]) -> Callable[[F], F]:
    """Declare what a dependency can raise; every route using it documents those answers."""

    def mark(dependency: F) -> F:
        dependency.__krika_raises__ = (  # type: ignore[attr-defined]
            *getattr(dependency, "__krika_raises__", ()),
            *errors,
        )
        return dependency

    return mark


def error_response(
    status: int, code: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


_FASTAPI_UNPARSEABLE_BODY = "There was an error parsing the body"
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
        problems = exc.errors()
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in problems[:MAX_VALIDATION_ERRORS]
        ]
        if len(problems) > MAX_VALIDATION_ERRORS:
            more = len(problems) - MAX_VALIDATION_ERRORS
            detail.append({"loc": [], "msg": f"and {more} more problems", "type": "truncated"})
        return error_response(422, "validation_error", detail)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == _FASTAPI_UNPARSEABLE_BODY:
            # FastAPI's answer to a body it could not decode (e.g. JSON that is not UTF-8):
            # the same problem as malformed JSON, which FastAPI itself reports as a 422.
            problem = {"loc": ["body"], "msg": "The body is not valid JSON", "type": "json_invalid"}
            return error_response(422, ValidationFailed.code, [problem])
        code = _HTTP_CODES.get(exc.status_code, "error" if exc.status_code >= 500 else "http_error")
        return error_response(exc.status_code, code, exc.detail, getattr(exc, "headers", None))

    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
