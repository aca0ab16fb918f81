"""Asking the decision API: ``GET /v1/subjects/{id}/decisions`` and ``POST /v1/decisions:batch``.

:class:`DecisionClient` (sync) and :class:`AsyncDecisionClient` share their behaviour:

- **Fail closed** (default): any error (timeout, connection refused, 5xx, retries exhausted,
  a 4xx) answers ``allowed=False`` with ``reason="error"`` and the cause in ``error``.
  ``fail_closed=False`` raises :class:`DecisionError` instead.
- **Retries** on 429 and 503 (honouring ``Retry-After``, capped by ``max_retry_after_s``), on
  409 ``sequence_not_reached`` and on connection errors and timeouts, up to ``retries``
  times, with a short exponential backoff when the server gives no delay.
- **Freshness token**: pass the ``Consent-Token`` of a write as ``min_sequence`` and the
  answer is never computed from an older state (API.md "Freshness"). A server that predates
  it ignores ``min_sequence`` on the single read; on the batch it refuses unknown item fields
  with 422 (so the client sends ``min_sequence`` only on items that have one). The answer's
  ``sequence`` is ``None`` when the server does not report it.
- Batches over 1,000 items are split into several requests; answers keep the input order.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

REASON_ERROR = "error"
BATCH_MAX = 1000
RETRY_STATUSES = {429, 503}


@dataclass(frozen=True, slots=True)
class Decision:
    subject_id: str
    purpose: str
    allowed: bool
    reason: str
    sequence: int | None = None
    error: str | None = None

    def __bool__(self) -> bool:  # ``if client.decide(s, p):`` means what it says
        return self.allowed


@dataclass(frozen=True, slots=True)
class Query:
    subject_id: str
    purpose: str
    min_sequence: int | None = None


class DecisionError(Exception):
    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def consent_token(headers: Mapping[str, str]) -> int | None:
    """The freshness token of a write's response: ``Consent-Token`` (API.md "Freshness"),
    else the ``ETag`` (the same subject sequence, quoted) of a server that predates it."""
    h = {k.lower(): v for k, v in headers.items()}
    for name in ("consent-token", "etag"):
        value = h.get(name, "").strip().removeprefix("W/").strip('"')
        if value.isdigit():
            return int(value)
    return None


def _queries(items: Iterable[Query | tuple[str, str]]) -> list[Query]:
    return [q if isinstance(q, Query) else Query(q[0], q[1]) for q in items]


class _Core:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        bearer_token: str | None = None,
        timeout: float = 2.0,
        retries: int = 3,
        max_retry_after_s: float = 5.0,
        fail_closed: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.max_retry_after_s = max_retry_after_s
        self.fail_closed = fail_closed
        self.headers = dict(headers or {})
        if api_key:
            self.headers["X-API-Key"] = api_key
        if bearer_token:
            self.headers["Authorization"] = f"Bearer {bearer_token}"

    def _single_request(self, q: Query) -> tuple[str, str, dict[str, Any]]:
        params: dict[str, Any] = {"purpose": q.purpose}
        if q.min_sequence is not None:
            params["min_sequence"] = q.min_sequence
        return "GET", f"/v1/subjects/{quote(q.subject_id, safe='')}/decisions", {"params": params}

    def _batch_request(self, qs: Sequence[Query]) -> tuple[str, str, dict[str, Any]]:
        items = []
        for q in qs:
            item: dict[str, Any] = {"subject_id": q.subject_id, "purpose": q.purpose}
            if q.min_sequence is not None:
                item["min_sequence"] = q.min_sequence
            items.append(item)
        return "POST", "/v1/decisions:batch", {"json": {"items": items}}

    def _delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before the next attempt, or None when not retryable."""
        if attempt >= self.retries:
            return None
        if response is not None:
            retryable = response.status_code in RETRY_STATUSES or (
                response.status_code == 409 and _code(response) == "sequence_not_reached"
            )
            if not retryable:
                return None
            after = retry_after(response)
            if after is not None:
                return min(after, self.max_retry_after_s)
        return min(0.05 * 2**attempt * (1 + random.random()), self.max_retry_after_s)

    def _error(
        self, qs: Sequence[Query], message: str, status: int | None, code: str | None
    ) -> list[Decision]:
        if not self.fail_closed:
            raise DecisionError(message, status, code)
        return [Decision(q.subject_id, q.purpose, False, REASON_ERROR, None, message) for q in qs]

    def _answers(
        self, qs: Sequence[Query], response: httpx.Response | None, exc: Exception | None
    ) -> list[Decision]:
        if response is None:
            return self._error(qs, f"{type(exc).__name__}: {exc}", None, None)
        if response.status_code != 200:
            detail = ""
            try:
                body = response.json()
                detail = body.get("detail") or body.get("title") or ""
            except ValueError:
                pass
            return self._error(
                qs,
                f"HTTP {response.status_code} {detail}".strip(),
                response.status_code,
                _code(response),
            )
        try:
            body = response.json()
            docs = body.get("items", [body])
            if len(docs) != len(qs):
                raise ValueError(f"{len(docs)} answers for {len(qs)} questions")
            return [
                Decision(
                    q.subject_id,
                    q.purpose,
                    d["allowed"] is True,
                    str(d.get("reason", "")),
                    d.get("sequence"),
                )
                for q, d in zip(qs, docs, strict=True)
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return self._error(qs, f"unexpected answer: {e}", response.status_code, None)


def _code(response: httpx.Response) -> str | None:
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) else None


class DecisionClient(_Core):
    """Synchronous: ``DecisionClient(url, api_key=...).allowed("u-1", "sale")``."""

    def __init__(
        self, base_url: str, *, transport: httpx.BaseTransport | None = None, **kw: Any
    ) -> None:
        super().__init__(base_url, **kw)
        self.http = httpx.Client(
            base_url=self.base_url,
            headers=self.headers,
            timeout=self.timeout,
            transport=transport,
        )

    def _send(self, qs: Sequence[Query], req: tuple[str, str, dict[str, Any]]) -> list[Decision]:
        method, url, kw = req
        attempt = 0
        while True:
            response: httpx.Response | None = None
            exc: Exception | None = None
            try:
                response = self.http.request(method, url, **kw)
            except httpx.HTTPError as e:
                exc = e
            delay = self._delay(attempt, response)
            if delay is None or (response is not None and response.status_code == 200):
                return self._answers(qs, response, exc)
            time.sleep(delay)
            attempt += 1

    def decide(self, subject_id: str, purpose: str, *, min_sequence: int | None = None) -> Decision:
        q = Query(subject_id, purpose, min_sequence)
        return self._send([q], self._single_request(q))[0]

    def allowed(self, subject_id: str, purpose: str, *, min_sequence: int | None = None) -> bool:
        return self.decide(subject_id, purpose, min_sequence=min_sequence).allowed

    def batch(self, items: Iterable[Query | tuple[str, str]]) -> list[Decision]:
        qs = _queries(items)
        out: list[Decision] = []
        for i in range(0, len(qs), BATCH_MAX):
            chunk = qs[i : i + BATCH_MAX]
            out.extend(self._send(chunk, self._batch_request(chunk)))
        return out

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DecisionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncDecisionClient(_Core):
    """``async with AsyncDecisionClient(url, api_key=...) as c: await c.allowed(s, p)``."""

    def __init__(
        self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None, **kw: Any
    ) -> None:
        super().__init__(base_url, **kw)
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self.headers,
            timeout=self.timeout,
            transport=transport,
        )

    async def _send(
        self, qs: Sequence[Query], req: tuple[str, str, dict[str, Any]]
    ) -> list[Decision]:
        method, url, kw = req
        attempt = 0
        while True:
            response: httpx.Response | None = None
            exc: Exception | None = None
            try:
                response = await self.http.request(method, url, **kw)
            except httpx.HTTPError as e:
                exc = e
            delay = self._delay(attempt, response)
            if delay is None or (response is not None and response.status_code == 200):
                return self._answers(qs, response, exc)
            await asyncio.sleep(delay)
            attempt += 1

    async def decide(
        self, subject_id: str, purpose: str, *, min_sequence: int | None = None
    ) -> Decision:
        q = Query(subject_id, purpose, min_sequence)
        return (await self._send([q], self._single_request(q)))[0]

    async def allowed(
        self, subject_id: str, purpose: str, *, min_sequence: int | None = None
    ) -> bool:
        return (await self.decide(subject_id, purpose, min_sequence=min_sequence)).allowed

    async def batch(self, items: Iterable[Query | tuple[str, str]]) -> list[Decision]:
        qs = _queries(items)
        out: list[Decision] = []
        for i in range(0, len(qs), BATCH_MAX):
            chunk = qs[i : i + BATCH_MAX]
            out.extend(await self._send(chunk, self._batch_request(chunk)))
        return out

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncDecisionClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
