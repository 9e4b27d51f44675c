"""OpenAPI 3 contracts for the demo catalogue.

Every service gets a contract with three kinds of operation: an inquiry (``GET``, idempotent), an
application or payment (``POST``, not idempotent unless the caller sends an ``Idempotency-Key``),
and a status check of an application (``GET``, idempotent). Operations carry ``x-idempotent`` so the
gateway knows what it may retry on another operator.
"""

from __future__ import annotations

import re
from typing import Any

# service id -> (inquiry path, inquiry summary in Persian, the POST path, POST summary in Persian)
_SPECIAL: dict[str, tuple[str, str, str, str]] = {
    "transport.traffic-fines": ("/fines", "استعلام خلافی خودرو با شماره پلاک", "/payments", "پرداخت جریمه"),
    "transport.freeway-toll": ("/tolls", "استعلام عوارض آزادراهی", "/payments", "پرداخت عوارض"),
    "payments.utility-bill": ("/bills", "استعلام قبض آب، برق و گاز", "/payments", "پرداخت قبض"),
    "payments.government-fee": ("/fees", "استعلام تعرفهٔ خدمات دولتی", "/payments", "پرداخت کارمزد"),
    "judicial.exit-ban": ("/status", "استعلام ممنوع‌الخروجی", "/objections", "ثبت اعتراض"),
    "identity.postal-address": ("/postcodes", "استعلام کد پستی", "/addresses", "ثبت نشانی"),
    "welfare.pension-slip": ("/slips", "دریافت فیش حقوق بازنشستگی", "/requests", "درخواست گواهی کسر از حقوق"),
    "welfare.insurance-record": ("/records", "استعلام سوابق بیمه", "/requests", "درخواست اصلاح سابقه"),
    "health.insurance-coverage": ("/coverage", "استعلام پوشش بیمهٔ سلامت", "/requests", "درخواست تمدید بیمه"),
    "health.vaccination-record": ("/records", "دریافت کارت واکسن", "/requests", "درخواست اصلاح سابقهٔ واکسن"),
    "education.degree-verification": ("/verifications", "استعلام اصالت مدرک تحصیلی", "/requests", "درخواست تأیید مدرک"),
}


def contract_for(service_id: str, name_fa: str, name_en: str, version: str = "1.0.0") -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of a demo service (a plain dict, JSON-serialisable)."""
    inquiry, inquiry_fa, post, post_fa = _SPECIAL.get(
        service_id, ("/inquiry", f"استعلام {name_fa}", "/applications", f"ثبت درخواست {name_fa}")
    )
    json_obj = {"application/json": {"schema": {"type": "object"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": name_en, "x-title-fa": name_fa, "version": version},
        "paths": {
            inquiry: {
                "get": {
                    "operationId": "inquiry",
                    "summary": inquiry_fa,
                    "x-idempotent": True,
                    "parameters": [
                        {"name": "q", "in": "query", "required": False, "schema": {"type": "string"},
                         "description": "شناسهٔ مورد استعلام (کد ملی، پلاک، شناسهٔ قبض…)"}
                    ],
                    "responses": {"200": {"description": "نتیجهٔ استعلام", "content": json_obj}},
                }
            },
            post: {
                "post": {
                    "operationId": "submit",
                    "summary": post_fa,
                    "x-idempotent": False,
                    "requestBody": {"required": True, "content": json_obj},
                    "responses": {"201": {"description": "ثبت شد", "content": json_obj}},
                }
            },
            f"{post}/{{tracking_code}}": {
                "get": {
                    "operationId": "status",
                    "summary": "پیگیری وضعیت",
                    "x-idempotent": True,
                    "parameters": [
                        {"name": "tracking_code", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": {"description": "وضعیت", "content": json_obj}},
                }
            },
        },
    }


HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
_OPENAPI_VERSION = re.compile(r"3\.[0-9]+(\.[0-9]+)?", re.ASCII)
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", re.ASCII)
_TEMPLATE = re.compile(r"\{([^{}]*)\}")


def _path_problems(path: str) -> list[str]:
    """Problems with one path template: dot or empty segments, unbalanced braces, more than one
    ``{param}`` in a segment (the gateway routes one parameter per segment), bad parameter names."""
    problems: list[str] = []
    if path == "/":
        return problems
    params: list[str] = []
    for seg in path[1:].split("/"):
        if seg == "":
            problems.append(f"path {path!r} has an empty segment ('//' or a trailing '/')")
            continue
        if seg in (".", ".."):
            problems.append(f"path {path!r} has a '{seg}' segment")
            continue
        names = _TEMPLATE.findall(seg)
        rest = _TEMPLATE.sub("", seg)
        if "{" in rest or "}" in rest:
            problems.append(f"path {path!r}: unbalanced '{{' or '}}' in segment {seg!r}")
            continue
        if len(names) > 1:
            problems.append(f"path {path!r}: segment {seg!r} has {len(names)} parameters; at most one per segment")
            continue
        for name in names:
            if not _PARAM_NAME.fullmatch(name):
                problems.append(f"path {path!r}: parameter name {name!r} is not valid ([A-Za-z_][A-Za-z0-9_.-]*)")
            elif name in params:
                problems.append(f"path {path!r}: parameter {name!r} appears twice")
            params.append(name)
    return problems


def validate_contract(doc: Any) -> list[str]:
    """Problems with a submitted contract (empty list when acceptable).

    Checks the OpenAPI 3 shape the gateway relies on:

    * ``openapi`` a string ``3.<minor>[.<patch>]`` (a JSON number such as ``3.1`` is refused);
    * ``info`` an object; ``paths`` a non-empty object with at least one operation;
    * each path starts with ``/``, has no empty, ``.`` or ``..`` segment, balanced braces and at
      most one ``{param}`` per segment with a valid name (what the gateway can route);
    * each operation is an object with a ``responses`` object; ``x-idempotent``, when present,
      is a boolean.
    """
    problems: list[str] = []
    if not isinstance(doc, dict):
        return ["contract must be a JSON object (an OpenAPI 3 document)"]
    version = doc.get("openapi")
    if not isinstance(version, str) or not _OPENAPI_VERSION.fullmatch(version):
        problems.append("field 'openapi' must be a version string such as \"3.0.3\" or \"3.1.0\"")
    if not isinstance(doc.get("info"), dict):
        problems.append("field 'info' must be an object")
    paths = doc.get("paths")
    if not isinstance(paths, dict) or not paths:
        problems.append("field 'paths' must be a non-empty object")
        return problems
    n_ops = 0
    for path, item in paths.items():
        if not isinstance(path, str) or not path.startswith("/"):
            problems.append(f"path {path!r} must start with '/'")
        else:
            problems.extend(_path_problems(path))
        if not isinstance(item, dict):
            problems.append(f"path {path!r} must map to an object of operations")
            continue
        for method, op in item.items():
            if method.lower() not in HTTP_METHODS:
                continue
            n_ops += 1
            if not isinstance(op, dict):
                problems.append(f"{method.upper()} {path} must be an object")
                continue
            if not isinstance(op.get("responses"), dict) or not op["responses"]:
                problems.append(f"{method.upper()} {path}: 'responses' must be a non-empty object")
            if "x-idempotent" in op and not isinstance(op["x-idempotent"], bool):
                problems.append(f"{method.upper()} {path}: x-idempotent must be true or false")
    if n_ops == 0:
        problems.append("the contract must define at least one operation (get, post, ...)")
    return problems
