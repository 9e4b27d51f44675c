"""A demo operator: a real HTTP server (aiohttp) that implements every service contract the
operator is licensed for, with plausible Persian answers, configurable latency and failure rate.

Run one with ``python -m zistboom.demo.operator_server --id gilan-pardaz --port 18100``; ``zistboom
operators`` starts one process per seeded operator (separate processes, so one can be killed).

Request paths: the first path segment equal to a catalogue service id selects the service, the rest
is the operation path (so ``/transport.traffic-fines/fines?q=...`` and
``/services/transport.traffic-fines/fines`` both work). ``GET /healthz`` answers 200 while up.
``POST /__control {"latency_ms": 20, "failure_rate": 0.1}`` changes behaviour at run time
(127.0.0.1 only; the demo's own chaos switch).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import random
from datetime import datetime, timedelta, timezone

from aiohttp import web

_json = functools.partial(web.json_response, dumps=functools.partial(json.dumps, ensure_ascii=False))

from zistboom.registry.catalog import load_services
from zistboom.text.digits import to_persian_digits
from zistboom.text.jalali import format_jalali, jalali_iso_pair

PLACES = ("بزرگراه همت", "میدان آزادی", "خیابان ولیعصر", "بلوار امام رضا", "جادهٔ رشت–قزوین",
          "میدان شهرداری رشت", "خیابان چهارباغ", "بلوار زند", "آزادراه تهران–کرج")
OFFENCES = (("عبور از چراغ قرمز", 2_000_000), ("سرعت غیرمجاز (بیش از ۳۰ کیلومتر)", 3_000_000),
            ("توقف در محل ممنوع", 500_000), ("استفاده از تلفن همراه هنگام رانندگی", 1_000_000),
            ("نبستن کمربند ایمنی", 500_000), ("سبقت غیرمجاز", 2_000_000))


class OperatorBehaviour:
    """Latency (ms) and failure rate (fraction of requests answered 503) of this operator."""

    def __init__(self, latency_ms: float, failure_rate: float, seed: int):
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self.rng = random.Random(seed)


def _rng_for(*parts: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:8], "big"))


def _fines(plate: str) -> dict:
    rng = _rng_for("fines", plate)
    now = datetime.now(timezone.utc)
    items = []
    for i in range(rng.randint(0, 5)):
        offence, amount = rng.choice(OFFENCES)
        when = now - timedelta(days=rng.randint(1, 400), minutes=rng.randint(0, 1440))
        items.append({
            "fine_id": f"{rng.randint(10**9, 10**10 - 1)}",
            "offence_fa": offence,
            "place_fa": rng.choice(PLACES),
            "amount_rials": amount,
            "amount_fa": to_persian_digits(f"{amount:,}".replace(",", "٬")) + " ریال",
            "date": jalali_iso_pair(when),
            "date_fa": format_jalali(when),
        })
    total = sum(f["amount_rials"] for f in items)
    return {"plate": plate, "fines": items, "total_rials": total,
            "total_fa": to_persian_digits(f"{total:,}".replace(",", "٬")) + " ریال"}


def build_app(operator_id: str, behaviour: OperatorBehaviour) -> web.Application:
    services = {s.id: s for s in load_services()}
    submitted: dict[str, dict] = {}  # Idempotency-Key -> first answer (operator-side de-duplication)
    counters = {"requests": 0}

    async def healthz(_request: web.Request) -> web.Response:
        return _json({"status": "ok", "operator": operator_id})

    async def control(request: web.Request) -> web.Response:
        if request.remote not in ("127.0.0.1", "::1"):
            raise web.HTTPForbidden()
        try:
            body = await request.json()
            if "latency_ms" in body:
                behaviour.latency_ms = max(0.0, float(body["latency_ms"]))
            if "failure_rate" in body:
                behaviour.failure_rate = min(1.0, max(0.0, float(body["failure_rate"])))
        except (ValueError, TypeError):
            return _json({"error": "body must be JSON with numeric latency_ms / failure_rate"}, status=400)
        return _json({"latency_ms": behaviour.latency_ms, "failure_rate": behaviour.failure_rate,
                                  "requests": counters["requests"]})

    async def handle(request: web.Request) -> web.Response:
        counters["requests"] += 1
        parts = [p for p in request.path.split("/") if p]
        idx = next((i for i, p in enumerate(parts) if p in services), None)
        if idx is None:
            return _json({"error": "unknown service", "path": request.path}, status=404)
        service = services[parts[idx]]
        rest = parts[idx + 1:]
        if behaviour.latency_ms:
            await asyncio.sleep(behaviour.latency_ms / 1000 * (0.5 + behaviour.rng.random()))
        if behaviour.failure_rate and behaviour.rng.random() < behaviour.failure_rate:
            return _json({"error": "operator temporarily unavailable"}, status=503)
        headers = {"X-Operator-Id": operator_id}
        now = datetime.now(timezone.utc)
        base = {"service": service.id, "service_name_fa": service.name_fa, "operator": operator_id,
                "answered_at": jalali_iso_pair(now)}
        if request.method == "GET" and len(rest) == 2:  # status of an application
            rng = _rng_for("status", rest[1])
            state = rng.choice(("در حال بررسی", "تأیید شده", "آمادهٔ تحویل", "نیاز به مدارک تکمیلی"))
            return _json({**base, "tracking_code": rest[1], "status_fa": state}, headers=headers)
        if request.method == "GET":
            q = request.query.get("q", "")
            if service.id == "transport.traffic-fines":
                return _json({**base, **_fines(q or "۱۲ب۳۴۵-۶۷")}, headers=headers)
            rng = _rng_for(service.id, q)
            return _json({
                **base, "query": q,
                "result_fa": f"استعلام «{service.name_fa}» انجام شد.",
                "record_no": to_persian_digits(rng.randint(10**6, 10**7 - 1)),
                "valid_until": jalali_iso_pair(now + timedelta(days=rng.randint(30, 365))),
            }, headers=headers)
        if request.method in ("POST", "PUT"):
            key = request.headers.get("Idempotency-Key")
            if key and key in submitted:
                return _json(submitted[key], status=201, headers={**headers, "Idempotent-Replayed": "true"})
            raw = await request.read()
            code = f"{random.randint(10**11, 10**12 - 1)}"
            answer = {**base, "tracking_code": code, "received_bytes": len(raw),
                      "message_fa": f"درخواست شما برای «{service.name_fa}» ثبت شد. کد رهگیری: {to_persian_digits(code)}"}
            if key:
                submitted[key] = answer
            return _json(answer, status=201, headers=headers)
        return _json({"error": "method not allowed"}, status=405)

    app = web.Application(client_max_size=1 << 20)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/__control", control)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run one demo operator")
    ap.add_argument("--id", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency-ms", type=float, default=5.0)
    ap.add_argument("--failure-rate", type=float, default=0.0)
    args = ap.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    behaviour = OperatorBehaviour(args.latency_ms, args.failure_rate, seed=args.port)
    web.run_app(build_app(args.id, behaviour), host=args.host, port=args.port, print=None,
                access_log=None, handle_signals=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
