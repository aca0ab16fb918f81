"""Receiving the propagator's webhooks, framework-free.

:func:`verify` checks a Standard Webhooks signature and timestamp. A :class:`Processor`
adds the rest of what a processor owes the platform: it drops a ``webhook-id`` it already
applied, ignores a delivery whose sequence is older than the last one applied for that
subject, calls your handler, and turns the outcome into the status the propagator
understands:

=====================================  ======  ==========================================
outcome                                status  the propagator then
=====================================  ======  ==========================================
handler returned                       204     marks the delivery ``delivered``
duplicate ``webhook-id``, older seq    200     marks it ``delivered`` (nothing to redo)
handler raised :class:`Rejected`       422     stops: ``dead``, visible to operators
bad signature or stale timestamp       401     stops: ``dead`` (fix the secret, redrive)
body that is not a delivery            400     stops: ``dead``
handler raised :class:`RetryLater`,    503     retries with backoff
or any other exception
=====================================  ======  ==========================================

``Rejected(status=...)`` and ``RetryLater(status=...)`` choose another 4xx/5xx.
:func:`asgi_app` serves a processor as a bare ASGI app; ``consent_client.fastapi`` (extra
``consent_client[fastapi]``) mounts it in a FastAPI app.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from consent_client.events import MalformedEvent, WebhookDelivery
from consent_client.parsing import Parser
from consent_client.stores import IdempotencyStore, MemoryStore, ParkedRecord

log = logging.getLogger("consent_client.processor")

DEFAULT_TOLERANCE_S = 300


class SignatureError(Exception):
    """The webhook's signature or timestamp does not verify."""


class Rejected(Exception):
    """Raise from a handler for a delivery that can never be applied (a permanent 4xx)."""

    def __init__(self, reason: str = "rejected", status: int = 422) -> None:
        super().__init__(reason)
        if not 400 <= status < 500 or status in (408, 429):
            raise ValueError("Rejected needs a permanent 4xx status (not 408/429)")
        self.status = status


class RetryLater(Exception):
    """Raise from a handler to have the propagator try again later (a 5xx)."""

    def __init__(self, reason: str = "retry later", status: int = 503) -> None:
        super().__init__(reason)
        if not (500 <= status < 600 or status in (408, 429)):
            raise ValueError("RetryLater needs a retryable status (5xx, 408 or 429)")
        self.status = status


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("webhook secret must be whsec_<base64 key>") from None


def sign(secret: str | bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for a body (what the propagator sends); for tests."""
    mac = hmac.new(_key(secret), f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify(
    secret: str | bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check ``webhook-signature`` over ``<webhook-id>.<webhook-timestamp>.<body>`` and that
    the timestamp is within ``tolerance_s`` of now. Raises :class:`SignatureError`."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        stamp = int(ts)
    except ValueError:
        raise SignatureError(f"webhook-timestamp {ts!r} is not unix seconds") from None
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance_s:
        raise SignatureError(f"webhook-timestamp {stamp} is outside the {tolerance_s}s tolerance")
    expected = sign(secret, msg_id, stamp, body).split(",", 1)[1].encode()
    for candidate in sigs.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return
    raise SignatureError("no webhook-signature matches")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :meth:`Processor.handle` decided; ``status`` is the HTTP status to answer."""

    status: int
    result: str  # applied, duplicate, stale, rejected, retry, bad_signature, malformed
    detail: str = ""
    delivery: WebhookDelivery | None = None


@dataclass
class ProcessorStats:
    applied: int = 0
    duplicate: int = 0
    stale: int = 0
    rejected: int = 0
    retry: int = 0
    bad_signature: int = 0
    malformed: int = 0
    by_result: dict[str, int] = field(default_factory=dict)


Handler = Callable[[WebhookDelivery], Awaitable[None] | None]


class Processor:
    """``Processor(secret, handler)``; ``await processor.handle(body, headers)`` → Outcome.

    ``store`` remembers applied webhook ids and per-subject sequences (default: in memory;
    pass a :class:`~consent_client.stores.SqliteStore` or your own table to survive restarts).
    Deliveries for one subject are handled one at a time."""

    def __init__(
        self,
        secret: str | bytes,
        handler: Handler,
        *,
        store: IdempotencyStore | None = None,
        tolerance_s: int = DEFAULT_TOLERANCE_S,
        on_park: Callable[[ParkedRecord], None] | None = None,
    ) -> None:
        self.secret = _key(secret)
        self.handler = handler
        self.store: IdempotencyStore = store if store is not None else MemoryStore()
        self.tolerance_s = tolerance_s
        self.on_park = on_park
        self.parser = Parser()
        self.stats = ProcessorStats()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def _done(self, outcome: Outcome) -> Outcome:
        setattr(self.stats, outcome.result, getattr(self.stats, outcome.result) + 1)
        self.stats.by_result[outcome.result] = self.stats.by_result.get(outcome.result, 0) + 1
        return outcome

    def _park(
        self, reason: str, body: bytes, headers: Mapping[str, str], event_id: str | None
    ) -> None:
        rec = ParkedRecord(reason=reason, headers=dict(headers), value=body, event_id=event_id)
        self.store.park(rec)
        if self.on_park is not None:
            self.on_park(rec)

    def check(self, body: bytes, headers: Mapping[str, str]) -> Outcome | WebhookDelivery:
        """Verify and decode; an :class:`Outcome` when there is nothing to apply."""
        h = {k.lower(): v for k, v in headers.items()}
        try:
            verify(self.secret, body, h, tolerance_s=self.tolerance_s)
        except SignatureError as exc:
            log.warning("consent webhook refused: %s", exc)
            return self._done(Outcome(401, "bad_signature", str(exc)))
        try:
            delivery, _unknown = self.parser.webhook(body)
        except MalformedEvent as exc:
            self._park(str(exc), body, h, h.get("webhook-id"))
            return self._done(Outcome(400, "malformed", str(exc)))
        webhook_id = h["webhook-id"]
        if self.store.seen(webhook_id):
            return self._done(Outcome(200, "duplicate", "webhook-id already applied", delivery))
        last = self.store.last_sequence(delivery.subject_id)
        if delivery.sequence < last and not delivery.repair:
            return self._done(
                Outcome(200, "stale", f"sequence {delivery.sequence} < applied {last}", delivery)
            )
        return delivery

    def _finish(
        self,
        delivery: WebhookDelivery,
        webhook_id: str,
        exc: BaseException | None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Outcome:
        if exc is None:
            self.store.applied(webhook_id, delivery.subject_id, delivery.sequence)
            return self._done(Outcome(204, "applied", "", delivery))
        if isinstance(exc, Rejected):
            self._park(str(exc), body, headers or {"webhook-id": webhook_id}, webhook_id)
            return self._done(Outcome(exc.status, "rejected", str(exc), delivery))
        if isinstance(exc, RetryLater):
            return self._done(Outcome(exc.status, "retry", str(exc), delivery))
        log.exception("consent webhook handler failed; asking for a retry", exc_info=exc)
        return self._done(Outcome(503, "retry", f"{type(exc).__name__}: {exc}", delivery))

    async def handle(self, body: bytes, headers: Mapping[str, str]) -> Outcome:
        checked = self.check(body, headers)
        if isinstance(checked, Outcome):
            return checked
        webhook_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
        subject = checked.subject_id
        lock, users = self._locks.get(subject) or (asyncio.Lock(), 0)
        self._locks[subject] = (lock, users + 1)
        try:
            async with lock:
                again = self.check(body, headers)  # a concurrent twin may have applied it
                if isinstance(again, Outcome):
                    return again
                try:
                    result = self.handler(checked)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    return self._finish(checked, webhook_id, exc, body, headers)
                return self._finish(checked, webhook_id, None)
        finally:
            lock, users = self._locks[subject]
            if users == 1:
                del self._locks[subject]
            else:
                self._locks[subject] = (lock, users - 1)

    def handle_sync(self, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """For synchronous frameworks: the handler must be a plain function. Not safe for two
        concurrent deliveries of one subject: serialise per subject if your server is
        multi-threaded."""
        checked = self.check(body, headers)
        if isinstance(checked, Outcome):
            return checked
        webhook_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
        try:
            result = self.handler(checked)
            if inspect.isawaitable(result):
                raise TypeError("handle_sync needs a synchronous handler")
        except Exception as exc:
            return self._finish(checked, webhook_id, exc, body, headers)
        return self._finish(checked, webhook_id, None)


def asgi_app(processor: Processor, path: str = "/consent") -> Any:
    """A bare ASGI application answering ``POST path`` with the processor (no framework)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] != path or scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        outcome = await processor.handle(b"".join(chunks), headers)
        await send({"type": "http.response.start", "status": outcome.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app
