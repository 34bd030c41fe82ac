"""Application errors and the one JSON error shape every response uses.

    AppError                 a failure the caller can act on; carries an HTTP status
    ├── BadRequest           400
    ├── Unauthorized         401, with `WWW-Authenticate: Bearer`
    ├── Forbidden            403
    ├── NotFound             404
    ├── Conflict             409
    ├── PayloadTooLarge      413
    ├── Unprocessable        422, input that is well-formed but not acceptable
    └── ServiceUnavailable   503, with `Retry-After`

Domains subclass these at the top of their `service.py`; the class name is the
`error` field of the body: `{"error": "OrderNotFound", "detail": "..."}`.
Request validation uses the same envelope and adds the field list as `errors`.
"""

from http import HTTPStatus
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.db import is_database_unavailable

log = structlog.get_logger(__name__)


class ErrorBody(BaseModel):
    """Every error answer: the error's name and a sentence about it."""

    error: str
    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(ErrorBody):
    errors: list[ValidationIssue]


def _documented(description: str, model: type[BaseModel] = ErrorBody) -> dict[str, Any]:
    return {"model": model, "description": description}


# Answers every authenticated API call may give, documented once per router.
API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _documented("Malformed request, such as a cursor this API did not issue"),
    401: _documented("No API key, or an unknown or revoked one"),
    403: _documented("A valid key without the right for this call"),
    422: _documented("The request is not valid; see `errors`", ValidationErrorBody),
    503: _documented("The database is unavailable; retry later"),
}


def documented(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for route-specific errors, e.g. `documented(404)`."""
    return {
        status: _documented(descriptions.get(f"s{status}", HTTPStatus(status).phrase))
        for status in statuses
    }


class AppError(Exception):
    status_code: int = HTTPStatus.BAD_REQUEST
    headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def error(self) -> str:
        return type(self).__name__


class BadRequest(AppError):
    status_code = HTTPStatus.BAD_REQUEST


class Unauthorized(AppError):
    status_code = HTTPStatus.UNAUTHORIZED
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class Forbidden(AppError):
    status_code = HTTPStatus.FORBIDDEN


class NotFound(AppError):
    status_code = HTTPStatus.NOT_FOUND


class Conflict(AppError):
    status_code = HTTPStatus.CONFLICT


class PayloadTooLarge(AppError):
    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Unprocessable(AppError):
    status_code = HTTPStatus.UNPROCESSABLE_ENTITY


class ServiceUnavailable(AppError):
    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "5"}


class DatabaseUnavailable(ServiceUnavailable):
    pass


def error_response(
    status_code: int,
    error: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"error": error, "detail": detail, **extra}
    return JSONResponse(body, status_code=status_code, headers=headers)


async def _handle_app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc.status_code, exc.error, exc.detail, headers=exc.headers)


async def _handle_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only location, message and type: the rejected input is never echoed back.
    errors = [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
        for item in exc.errors()
    ]
    return error_response(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "ValidationError",
        "The request is not valid; see errors.",
        errors=errors,
    )


async def _handle_http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    error = "".join(word.capitalize() for word in phrase.replace("-", " ").split())
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, error, str(exc.detail), headers=headers)


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if is_database_unavailable(exc):
        log.warning(
            "database.unavailable",
            path=request.url.path,
            error_type=type(exc).__name__,
        )
        unavailable = DatabaseUnavailable("The database is unavailable; retry later.")
        return await _handle_app_error(request, unavailable)
    log.error("request.unhandled_error", path=request.url.path, exc_info=exc)
    return error_response(
        HTTPStatus.INTERNAL_SERVER_ERROR, "InternalError", "An unexpected error."
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _handle_app_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(SQLAlchemyError, _handle_unexpected)
    app.add_exception_handler(OSError, _handle_unexpected)
    app.add_exception_handler(Exception, _handle_unexpected)
