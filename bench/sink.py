"""A sink processor: answers every webhook 204 and remembers when each arrived.

It stands in for the ``email`` processor. It is deliberately cheap (aiohttp, no signature
check: the tests cover signatures) so that it does not bound what it measures; the
"processor-only" ceiling measures it directly.

``GET /_stats`` counts; ``GET /_dump?prefix=P`` lists ``[received_wall, subject_id, sequence,
occurred_at]`` for live (non-replay) deliveries of subjects starting with ``P``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson
from aiohttp import web

from bench.load import fast_loop

Record = tuple[float, str, int, str, bool]


def sink_app() -> web.Application:
    records: list[Record] = []
    stats: dict[str, Any] = {"count": 0, "replay": 0, "first_replay": None, "last_replay": None}

    async def consent(request: web.Request) -> web.Response:
        raw = await request.read()
        now = time.time()
        if "webhook-signature" not in request.headers:
            return web.Response(status=401)
        body = orjson.loads(raw)
        replay = bool(body.get("replay"))
        records.append(
            (now, body["subject_id"], int(body.get("sequence") or 0), body["occurred_at"], replay)
        )
        stats["count"] += 1
        if replay:
            stats["replay"] += 1
            stats["first_replay"] = stats["first_replay"] or now
            stats["last_replay"] = now
        return web.Response(status=204)

    async def get_stats(_request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(stats), content_type="application/json")

    async def dump(request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        rows = [r[:4] for r in records if not r[4] and r[1].startswith(prefix)]
        return web.Response(body=orjson.dumps(rows), content_type="application/json")

    app = web.Application()
    app.router.add_post("/consent", consent)
    app.router.add_get("/_stats", get_stats)
    app.router.add_get("/_dump", dump)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    fast_loop()
    web.run_app(sink_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
