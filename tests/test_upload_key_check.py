"""The upload path's key check (``BodyLimit.may_upload``, a database read in the real app)
runs before admission (api/admission.py), so nothing else bounds it: an unauthenticated
flood of forged keys must not turn into as many concurrent database reads, and a body that
fits the ordinary limit needs no check at all."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from consent.api.middleware import MAX_BODY, BodyLimit
from tests.test_admission import HeldApp

UPLOAD = "/v1/admin/imports"


class SlowCheck:
    """A ``may_upload`` that takes its time (as a database read under load does)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = self.running = self.most = 0

    async def __call__(self, key: str) -> bool:
        self.calls += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.wait()
            return False
        finally:
            self.running -= 1


async def post(app: Any, length: int, key: bytes = b"ck_forged_xxxxxxxx") -> tuple[int, bytes]:
    headers = [(b"x-api-key", key), (b"content-length", str(length).encode())]
    scope = {"type": "http", "method": "POST", "path": UPLOAD, "headers": headers}
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"x" * length, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        else:
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["body"]


async def test_a_body_within_the_ordinary_limit_is_not_checked() -> None:
    inner, check = HeldApp(), SlowCheck()
    inner.release.set()
    check.release.set()
    app = BodyLimit(inner, uploads={UPLOAD: 10 * MAX_BODY}, may_upload=check)
    assert (await post(app, 100))[0] == 204
    assert (await post(app, 0))[0] == 204
    assert check.calls == 0  # nothing to open: no database read for it


async def test_concurrent_key_checks_are_bounded_and_the_rest_shed() -> None:
    inner, check = HeldApp(), SlowCheck()
    inner.release.set()
    app = BodyLimit(inner, uploads={UPLOAD: 10 * MAX_BODY}, may_upload=check)
    flood = [asyncio.create_task(post(app, 2 * MAX_BODY)) for _ in range(50)]
    for _ in range(50):  # every request has either reached the check or been answered
        await asyncio.sleep(0.01)
        if check.calls + sum(t.done() for t in flood) >= 50:
            break
    shed = [t for t in flood if t.done()]
    assert check.most <= 4, f"{check.most} key checks (database reads) at once"
    assert shed, "past the bound a request is answered at once"
    for t in shed:
        status, body = t.result()
        assert status == 429 and orjson.loads(body)["code"] == "overloaded"
    check.release.set()
    statuses = [(await t)[0] for t in flood]
    assert set(statuses) <= {413, 429}  # a forged key never opens the upload limit
