"""The processor interface and the generic Standard Webhooks HTTP adapter."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import orjson
from standardwebhooks.webhooks import Webhook

from propagator.config import ProcessorConfig

RETRYABLE = {408, 429}
MAX_READ = 64 * 1024  # a longer answer is not read: the connection is dropped instead


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
        self,
        client: aiohttp.ClientSession,
        event_id: str,
        event_type: str,
        body: dict[str, Any],
        traceparent: str | None = None,
    ) -> Outcome: ...


class WebhookAdapter:
    """POST the minimised event, signed per Standard Webhooks. Subclasses shape the body."""

    def __init__(self, config: ProcessorConfig) -> None:
        self.config = config
        self._signer: Webhook | None = None  # built on first send: shaping bodies needs no secret

    def relevant(self, event_type: str, data: dict[str, Any]) -> bool:
        """Routing by decisions (API.md): an event whose ``changed_decisions`` meets our
        purposes, whatever our ``events`` list says; erasure always. The list selects what
        else we want: those types when their status changes touch our purposes, or when they
        concern the subject as a whole (profile, guardians)."""
        if event_type == "subject.erasure_requested":
            return True
        if data.get("replay"):
            return self.config.wants(event_type)
        changed = data.get("changed_decisions")
        if isinstance(changed, list) and any(p in self.config.purposes for p in changed):
            return True
        if not self.config.wants(event_type):
            return False
        changes = data.get("changes")
        if not changes:  # profile/guardian events can move decisions
            return True
        return any(
            isinstance(c, dict) and c.get("purpose") in self.config.purposes for c in changes
        )

    def body(self, event_id: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": event_id,
            "type": event_type,
            "subject_id": data["subject_id"],
            "sequence": data.get("sequence"),
            "occurred_at": data.get("occurred_at"),
            "replay": bool(data.get("replay", False)),
        }
        if data.get("repair"):  # drift repair: applied even at an equal or older sequence
            out["repair"] = True
        if event_type == "subject.erasure_requested":
            out["request_id"] = data.get("request_id")
            out["due_at"] = data.get("due_at")  # the processor's deadline; our erasure alert's
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
        self,
        client: aiohttp.ClientSession,
        event_id: str,
        event_type: str,
        body: dict[str, Any],
        traceparent: str | None = None,
    ) -> Outcome:
        """One signed POST. aiohttp rather than httpx: a quarter of the client CPU per request
        (docs/performance.md), and the propagator is bound by it during a replay.
        ``traceparent``: the W3C header continuing the change's trace (tracing on)."""
        raw = orjson.dumps(body)
        start = time.perf_counter()
        headers = self.headers(event_id, event_type, raw)
        if traceparent:
            headers["traceparent"] = traceparent
        try:
            async with client.post(
                self.config.url,
                data=raw,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
                allow_redirects=False,
            ) as resp:
                code = resp.status
                await _drain(resp)
        except TimeoutError:
            return Outcome(False, True, None, "timeout", _ms(start))
        except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as exc:
            return Outcome(False, True, None, f"connection error: {type(exc).__name__}", _ms(start))
        if 200 <= code < 300:
            return Outcome(True, False, code, None, _ms(start))
        retryable = code in RETRYABLE or code >= 500
        # the body is not kept: a processor's error text may quote personal data
        return Outcome(False, retryable, code, f"HTTP {code}", _ms(start))


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read the answer to its end, so the connection goes back to the pool, unless it is long
    (then it is closed). The content is never looked at."""
    if (resp.content_length or 0) > MAX_READ:
        return
    read = 0
    while read <= MAX_READ and (chunk := await resp.content.read(16 * 1024)):
        read += len(chunk)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)
