"""Demo processors for ``consentctl dev``, built on ``consent_client``'s processor helper.

The helper verifies the signature and timestamp, drops a ``webhook-id`` already applied and
a sequence older than the one applied for the subject, and maps the handler's outcome to
the status the propagator understands; a drift repair (``repair: true``) is applied even at
an equal or older sequence. These demos only log and keep what they applied, and
can be told to fail, to show retries and dead letters: ``POST /_control {"fail": 503}``
(a 5xx, 408 or 429 is retried; another 4xx is permanent).
"""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request

from consent_client import Processor, Rejected, RetryLater, WebhookDelivery
from consent_client.fastapi import webhook_router

log = structlog.get_logger()


def delivery_doc(d: WebhookDelivery) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": d.event_id,
        "type": d.type,
        "subject_id": d.subject_id,
        "sequence": d.sequence,
        "occurred_at": d.occurred_at.isoformat() if d.occurred_at else None,
        "replay": d.replay,
    }
    if d.repair:  # a drift repair: applied even at an equal or older sequence
        doc["repair"] = True
    if d.is_erasure:
        doc["request_id"] = d.request_id
    else:
        doc["decisions"] = dict(d.decisions or {})
    return doc


def demo_processor_app(name: str, secret: str) -> FastAPI:
    app = FastAPI(title=f"demo {name} processor", openapi_url=None, docs_url=None)
    state: dict[str, Any] = {"fail": None, "applied": {}}

    def apply(d: WebhookDelivery) -> None:
        fail = state["fail"]
        if fail:
            status = int(fail)
            if status >= 500 or status in (408, 429):
                raise RetryLater(f"told to fail with {status}", status=status)
            raise Rejected(f"told to fail with {status}", status=status)
        state["applied"][d.event_id] = delivery_doc(d)
        log.info(
            "demo_processor_received",
            processor=name,
            event_id=d.event_id,
            type=d.type,
            subject_id=d.subject_id,
            sequence=d.sequence,
            decisions=d.decisions,
            replay=d.replay,
            repair=d.repair,
        )

    processor = Processor(secret, apply)
    app.state.demo = state
    app.state.processor = processor
    app.include_router(webhook_router(processor, "/consent"))

    @app.post("/_control")
    async def control(request: Request) -> dict[str, Any]:
        body = orjson.loads(await request.body() or b"{}")
        state["fail"] = body.get("fail")
        return {"fail": state["fail"]}

    @app.get("/_received")
    async def received() -> dict[str, Any]:
        s = processor.stats
        return {
            "count": len(state["applied"]),
            "duplicates": s.duplicate,
            "stale": s.stale,
            "refused": s.bad_signature,
            "events": list(state["applied"].values())[-50:],
        }

    return app
