"""The admin API's error shape and the handlers that produce it.

Every error leaves the API as ``{"error": {"code", "message_fa", "message_en", "details"?}}``:

* :class:`ApiError` — raised by endpoints (404 unknown id, 409 duplicate / conflicting state,
  422 bad field, 401/403 auth);
* FastAPI's :class:`~fastapi.exceptions.RequestValidationError` (wrong types, missing fields, malformed
  JSON, out-of-range query parameters) → 422 naming each bad field in Persian and English;
* database errors: integrity (unique → 409, foreign key / check / not-null → 422), data (value
  the column cannot hold → 422), operational (database unreachable → 503);
* anything else → 500 with the same shape (a bug; logged with its traceback).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException

from zistboom.text.digits import to_persian_digits

log = logging.getLogger("zistboom.admin")


class ApiError(Exception):
    """An error to return to the caller as JSON.

    Args:
        status: HTTP status (4xx for the caller's mistakes).
        code: machine-readable code (``not_found``, ``duplicate_id``, ``invalid_field``...).
        message_fa / message_en: what a person should read, naming the field or object.
        details: optional JSON-serialisable extra facts (e.g. ``{"field": "national_id"}``).
    """

    def __init__(self, status: int, code: str, message_fa: str, message_en: str,
                 details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message_en)
        self.status = status
        self.code = code
        self.message_fa = message_fa
        self.message_en = message_en
        self.details = details
        self.headers = headers


def error_body(code: str, message_fa: str, message_en: str, details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message_fa": message_fa, "message_en": message_en}
    if details is not None:
        err["details"] = details
    return {"error": err}


def error_response(status: int, code: str, message_fa: str, message_en: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message_fa, message_en, details), status_code=status, headers=headers)


def not_found(kind_fa: str, kind_en: str, ident: object) -> ApiError:
    """404 for an unknown object, e.g. ``not_found("خدمت", "Service", "x")``."""
    shown = to_persian_digits(ident) if isinstance(ident, int) else ident
    return ApiError(404, "not_found", f"{kind_fa} «{shown}» پیدا نشد.", f"{kind_en} {ident!r} not found.")


def duplicate(kind_fa: str, kind_en: str, ident: object, field: str = "id") -> ApiError:
    """409 for an object that already exists."""
    return ApiError(409, "duplicate_id", f"{kind_fa} با {field} «{ident}» از پیش وجود دارد.",
                    f"{kind_en} with {field} {ident!r} already exists.", {"field": field})


def invalid_field(field: str, message_fa: str, message_en: str, code: str = "invalid_field") -> ApiError:
    """422 for one bad field (the field is named in ``details``)."""
    return ApiError(422, code, message_fa, message_en, {"fields": [{"field": field, "message": message_en}]})


# Persian wording for the pydantic error types people meet most; anything else reads "نامعتبر است".
_FA_BY_TYPE = {
    "missing": "الزامی است و ارسال نشده",
    "extra_forbidden": "شناخته‌شده نیست (فیلد اضافه)",
    "string_too_long": "بیش از اندازه بلند است",
    "string_too_short": "کوتاه‌تر از حد مجاز است",
    "string_type": "باید متن باشد",
    "string_pattern_mismatch": "قالب درستی ندارد",
    "int_type": "باید عدد صحیح باشد",
    "int_parsing": "باید عدد صحیح باشد",
    "int_from_float": "باید عدد صحیح باشد",
    "float_type": "باید عدد باشد",
    "float_parsing": "باید عدد باشد",
    "finite_number": "باید عددی متناهی باشد",
    "bool_type": "باید true یا false باشد",
    "bool_parsing": "باید true یا false باشد",
    "greater_than": "کوچک‌تر از حد مجاز است",
    "greater_than_equal": "کوچک‌تر از حد مجاز است",
    "less_than": "بزرگ‌تر از حد مجاز است",
    "less_than_equal": "بزرگ‌تر از حد مجاز است",
    "list_type": "باید فهرست باشد",
    "dict_type": "باید شیء JSON باشد",
    "model_type": "باید شیء JSON باشد",
    "model_attributes_type": "باید شیء JSON باشد",
    "too_long": "تعداد اعضایش بیش از حد مجاز است",
    "too_short": "تعداد اعضایش کمتر از حد مجاز است",
    "datetime_type": "باید تاریخ و زمان ISO 8601 باشد",
    "datetime_parsing": "باید تاریخ و زمان ISO 8601 باشد",
    "datetime_from_date_parsing": "باید تاریخ و زمان ISO 8601 باشد",
    "timezone_aware": "باید منطقهٔ زمانی داشته باشد (مثلاً Z)",
    "enum": "مقدارش مجاز نیست",
    "literal_error": "مقدارش مجاز نیست",
    "url_parsing": "نشانی اینترنتی معتبر نیست",
    "url_scheme": "باید با http یا https آغاز شود",
    "value_error": "نامعتبر است",
    "json_invalid": "JSON معتبر نیست",
}


def _field_name(loc: tuple[Any, ...]) -> tuple[str, str]:
    where = str(loc[0]) if loc else "body"
    rest = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else [str(p) for p in loc]
    return where, ".".join(rest) or where


def validation_details(errors: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """Turn pydantic errors into ``[{"field", "location", "type", "message"}]`` (never echoing the
    submitted value back) and whether the body was not JSON at all."""
    out: list[dict[str, Any]] = []
    malformed = False
    for e in errors:
        where, field = _field_name(tuple(e.get("loc") or ()))
        etype = str(e.get("type", "value_error"))
        if etype == "json_invalid":
            malformed = True
        msg = str(e.get("msg", "invalid value"))
        out.append({"field": field, "location": where, "type": etype, "message": msg[:300],
                    "message_fa": _FA_BY_TYPE.get(etype, "نامعتبر است")})
    return out, malformed


async def _validation_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    details, malformed = validation_details(list(exc.errors()))
    if malformed:
        return error_response(
            422, "malformed_json", "بدنهٔ درخواست JSON معتبر نیست؛ نحو JSON را بررسی کنید.",
            "The request body is not valid JSON; check its syntax.", details)
    fields = sorted({d["field"] for d in details})
    fa = "؛ ".join(f"«{d['field']}» {d['message_fa']}" for d in details[:10])
    en = "; ".join(f"{d['field']}: {d['message']}" for d in details[:10])
    return error_response(
        422, "invalid_fields", f"داده‌های ارسالی نامعتبر است: {fa}.", f"Invalid request fields: {en}.",
        {"fields": details, "field_names": fields})


async def _api_error_handler(_request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message_fa, exc.message_en, exc.details, exc.headers)


_HTTP_TEXT = {
    400: ("bad_request", "درخواست نادرست است.", "Bad request."),
    401: ("unauthorized", "ورود لازم است.", "Authentication required."),
    403: ("forbidden", "اجازهٔ این کار را ندارید.", "Forbidden."),
    404: ("not_found", "نشانی درخواست‌شده وجود ندارد.", "No such endpoint."),
    405: ("method_not_allowed", "این روش (method) برای این نشانی پشتیبانی نمی‌شود.", "Method not allowed for this URL."),
}


async def _http_error_handler(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code, fa, en = _HTTP_TEXT.get(exc.status_code, ("http_error", "خطای درخواست.", str(exc.detail)))
    if exc.detail and isinstance(exc.detail, str) and exc.detail.rstrip(".") not in en:
        en = f"{en.rstrip('.')}: {exc.detail}"
    return error_response(exc.status_code, code, fa, en, headers=getattr(exc, "headers", None))


def integrity_error(exc: IntegrityError) -> ApiError:
    """Classify a database integrity error: unique → 409; foreign key, check, not-null → 422.

    Uses the SQLSTATE on PostgreSQL (23505 unique, 23503 FK, 23514 check, 23502 not null) and the
    message text on SQLite (``UNIQUE constraint failed: ...``).
    """
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None)
    text = str(orig)
    first_line = text.splitlines()[0][:300] if text else ""
    if state == "23505" or "UNIQUE constraint failed" in text:
        return ApiError(409, "conflict", "رکوردی با همین شناسه یا مقدار یکتا از پیش وجود دارد.",
                        f"A record with the same unique value already exists ({first_line}).")
    if state == "23503" or "FOREIGN KEY constraint failed" in text:
        return ApiError(409 if str(exc.statement or "").lstrip().upper().startswith("DELETE") else 422, "reference_error",
                        "ارجاع به رکوردی که وجود ندارد یا هنوز رکوردهای دیگری به آن وابسته‌اند.",
                        f"A referenced record does not exist, or other records still depend on it ({first_line}).")
    if state == "23514" or "CHECK constraint failed" in text:
        return ApiError(422, "constraint_violated", "مقدار یکی از فیلدها با قواعد ثبت سازگار نیست.",
                        f"A field value breaks a registry rule ({first_line}).")
    return ApiError(422, "integrity_error", "داده‌ها با قواعد پایگاه داده سازگار نیست.",
                    f"The data breaks a database rule ({first_line}).")


def db_error(exc: Exception) -> ApiError:
    """Map a SQLAlchemy error raised while handling a request to an :class:`ApiError`."""
    if isinstance(exc, IntegrityError):
        return integrity_error(exc)
    if isinstance(exc, DataError):
        return ApiError(422, "invalid_value", "مقداری که فرستادید در پایگاه داده جا نمی‌شود (طول یا قالب).",
                        "A submitted value does not fit the database column (length or format).")
    if isinstance(exc, OperationalError):
        return ApiError(503, "database_unavailable", "پایگاه داده در دسترس نیست؛ کمی بعد دوباره تلاش کنید.",
                        "The database is unavailable; try again shortly.")
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        # raised before the statement reached the database, e.g. a value the column type refuses
        return ApiError(422, "invalid_value", "مقداری که فرستادید برای این فیلد پذیرفته نیست.",
                        f"A submitted value is not acceptable: {str(exc.orig)[:200]}")
    return ApiError(500, "database_error", "خطای پایگاه داده.", "Database error.")


async def _db_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    err = db_error(exc)
    if err.status >= 500:
        log.exception("database error in admin API", exc_info=exc)
    return error_response(err.status, err.code, err.message_fa, err.message_en, err.details)


async def _unhandled(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in admin API", exc_info=exc)
    return error_response(500, "internal_error", "خطای داخلی سرور؛ به راهبر سامانه خبر دهید.",
                          "Internal server error; please report it to the operators of this system.")


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler above on ``app``."""
    app.add_exception_handler(ApiError, _api_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StatementError, _db_error_handler)
    app.add_exception_handler(Exception, _unhandled)
