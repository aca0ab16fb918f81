"""The processor interface and the generic Standard Webhooks HTTP adapter."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from propagator.config import ProcessorConfig

RETRYABLE = {408, 429}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    retryable: bool
    status_code: int | None
    error: str | None
    latency_ms: float


class ProcessorAdapter(Protocol):
    config: ProcessorConfig

    def relevant(self, event_type: str, data: dict[str, Any]) -> bool: ...

    def body(self, event_id: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]: ...

    async def send(
        self, client: httpx.AsyncClient, event_id: str, event_type: str, body: dict[str, Any]
    ) -> Outcome: ...


class WebhookAdapter:
    """POST the minimised event, signed per Standard Webhooks. Subclasses shape the body."""

    def __init__(self, config: ProcessorConfig) -> None:
        self.config = config
        self._signer: Webhook | None = None  # built on first send: shaping bodies needs no secret

    def relevant(self, event_type: str, data: dict[str, Any]) -> bool:
        """Only configured event types; a change touching none of our purposes is skipped."""
        if not self.config.wants(event_type):
            return False
        if event_type == "subject.erasure_requested":
            return True
        changes = data.get("changes")
        if data.get("replay") or not changes:  # profile/guardian events can move decisions
            return True
        return any(c.get("purpose") in self.config.purposes for c in changes)

    def body(self, event_id: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": event_id,
            "type": event_type,
            "subject_id": data["subject_id"],
            "sequence": data.get("sequence"),
            "occurred_at": data.get("occurred_at"),
            "replay": bool(data.get("replay", False)),
        }
        if event_type == "subject.erasure_requested":
            out["request_id"] = data.get("request_id")
        else:
            decisions = data.get("decisions", {})
            out["decisions"] = {p: decisions[p] for p in self.config.purposes if p in decisions}
        return out

    def headers(self, event_id: str, event_type: str, raw: bytes) -> dict[str, str]:
        if self._signer is None:
            self._signer = Webhook(self.config.secret())
        now = datetime.now(UTC)
        signature = self._signer.sign(event_id, now, raw.decode())
        return {
            "webhook-id": event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
            "Idempotency-Key": event_id,
            "X-Consent-Event-Type": event_type,
            "Content-Type": "application/json",
        }

    async def send(
        self, client: httpx.AsyncClient, event_id: str, event_type: str, body: dict[str, Any]
    ) -> Outcome:
        raw = orjson.dumps(body)
        start = time.perf_counter()
        try:
            resp = await client.post(
                self.config.url,
                content=raw,
                headers=self.headers(event_id, event_type, raw),
                timeout=self.config.timeout_s,
            )
        except httpx.TimeoutException:
            return Outcome(False, True, None, "timeout", _ms(start))
        except httpx.HTTPError as exc:
            return Outcome(False, True, None, f"connection error: {type(exc).__name__}", _ms(start))
        code = resp.status_code
        if 200 <= code < 300:
            return Outcome(True, False, code, None, _ms(start))
        retryable = code in RETRYABLE or code >= 500
        # the body is not kept: a processor's error text may quote personal data
        return Outcome(False, retryable, code, f"HTTP {code}", _ms(start))


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)
