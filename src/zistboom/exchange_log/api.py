"""HTTP access to receipts: ``GET /v1/receipts/{request_id}`` for the client that made the
exchange.

Two ways to mount it in the gateway:

* :func:`receipt_response` — a plain coroutine: ``status, headers, body = await
  receipt_response(store, request_id, client_id)`` after the gateway has authenticated the caller.
* :class:`ReceiptASGI` — a raw ASGI app for the same path; the gateway puts the authenticated client
  id in ``scope["state"]["client_id"]`` (or ``scope["zistboom.client_id"]``) before calling it.

Answers: 200 receipt JSON (canonical bytes, see :mod:`zistboom.exchange_log.receipt`); 401 when no
client id is given; 400 for a malformed request id; 404 when the request id is unknown *or belongs
to another client* (indistinguishable on purpose); 409 ``receipt_pending`` with ``Retry-After``
while no signed tree head covers the record yet; 503 when the store is unreachable. Errors are
``{"error": {"code", "message_fa", "message_en"}}``. The database query runs in a worker thread so
the event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import math
import re

import orjson

from zistboom.exchange_log.receipt import dumps_receipt
from zistboom.exchange_log.store import ExchangeLogStore, ReceiptPending

PREFIX = "/v1/receipts/"
_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # what the gateway accepts as X-Request-ID
_JSON = (b"content-type", b"application/json; charset=utf-8")

_MESSAGES = {
    "unauthenticated": ("برای گرفتن رسید، سامانه‌ی درخواست‌کننده باید احراز هویت شود.",
                        "The calling client system must be authenticated to fetch a receipt."),
    "bad_request_id": ("شناسهٔ درخواست نامعتبر است.", "The request id is malformed."),
    "receipt_not_found": ("رسیدی برای این شناسهٔ درخواست پیدا نشد.", "No receipt for this request id."),
    "receipt_pending": ("رسید هنوز آماده نیست؛ چند ثانیه‌ی دیگر دوباره تلاش کنید.",
                        "The receipt is not ready yet; retry in a few seconds."),
    "log_unavailable": ("دفتر ثبت تبادل‌ها در دسترس نیست؛ کمی بعد دوباره تلاش کنید.",
                        "The exchange log store is unavailable; retry later."),
}


def _error(status: int, code: str, extra: list | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    fa, en = _MESSAGES[code]
    body = orjson.dumps({"error": {"code": code, "message_fa": fa, "message_en": en}})
    return status, [_JSON, *(extra or [])], body


async def receipt_response(store: ExchangeLogStore, request_id: str,
                           client_id: str | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """``(status, headers, body)`` for ``GET /v1/receipts/{request_id}`` by ``client_id``."""
    if not client_id:
        return _error(401, "unauthenticated")
    if not isinstance(request_id, str) or not _ID.fullmatch(request_id):
        return _error(400, "bad_request_id")
    try:
        receipt = await asyncio.to_thread(store.receipt_for_client, request_id, client_id)
    except ReceiptPending as p:
        return _error(409, "receipt_pending", [(b"retry-after", str(max(1, math.ceil(p.retry_after_s))).encode())])
    except Exception:
        return _error(503, "log_unavailable", [(b"retry-after", b"5")])
    if receipt is None:
        return _error(404, "receipt_not_found")
    return 200, [_JSON, (b"cache-control", b"no-store")], dumps_receipt(receipt)


class ReceiptASGI:
    """Raw ASGI app serving ``GET {PREFIX}{request_id}`` (see module docstring)."""

    def __init__(self, store: ExchangeLogStore):
        self.store = store

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        client_id = (scope.get("state") or {}).get("client_id") or scope.get("zistboom.client_id")
        if scope.get("method") != "GET" or not path.startswith(PREFIX):
            status, headers, body = 404, [_JSON], orjson.dumps(
                {"error": {"code": "not_found", "message_fa": "چنین نشانی‌ای وجود ندارد.",
                           "message_en": "No such path."}})
        else:
            status, headers, body = await receipt_response(self.store, path[len(PREFIX):], client_id)
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
