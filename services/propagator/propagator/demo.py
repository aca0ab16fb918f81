"""Demo processors for ``consentctl dev``: verify the signature, log what arrives.

Each keeps the event ids it applied (a real processor deduplicates by ``webhook-id`` the
same way) and can be told to fail, to show retries: ``POST /_control {"fail": 503}``.
"""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request, Response
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

log = structlog.get_logger()


def demo_processor_app(name: str, secret: str) -> FastAPI:
    app = FastAPI(title=f"demo {name} processor", openapi_url=None, docs_url=None)
    verifier = Webhook(secret)
    state: dict[str, Any] = {"fail": None, "applied": {}, "duplicates": 0}
    app.state.demo = state

    @app.post("/consent")
    async def receive(request: Request) -> Response:
        raw = await request.body()
        try:
            verifier.verify(raw, dict(request.headers))
        except WebhookVerificationError:
            log.warning("demo_processor_bad_signature", processor=name)
            return Response(status_code=401)
        if state["fail"]:
            return Response(status_code=int(state["fail"]))
        body = orjson.loads(raw)
        event_id = request.headers["webhook-id"]
        if event_id in state["applied"]:
            state["duplicates"] += 1
        else:
            state["applied"][event_id] = body
        log.info(
            "demo_processor_received",
            processor=name,
            event_id=event_id,
            type=body.get("type"),
            subject_id=body.get("subject_id"),
            sequence=body.get("sequence"),
            decisions=body.get("decisions"),
            replay=body.get("replay"),
        )
        return Response(status_code=204)

    @app.post("/_control")
    async def control(request: Request) -> dict[str, Any]:
        body = orjson.loads(await request.body() or b"{}")
        state["fail"] = body.get("fail")
        return {"fail": state["fail"]}

    @app.get("/_received")
    async def received() -> dict[str, Any]:
        return {
            "count": len(state["applied"]),
            "duplicates": state["duplicates"],
            "events": list(state["applied"].values())[-50:],
        }

    return app
