"""FastAPI integration (install ``consent_client[fastapi]``).

Either mount a ready route::

    app.include_router(webhook_router(processor, "/consent"))

or use the dependency in your own route; it verifies, deduplicates, runs the processor's
handler and gives you the :class:`~consent_client.processor.Outcome` to answer with::

    @app.post("/consent")
    async def consent(outcome: Annotated[Outcome, Depends(processor_dependency(p))]) -> Response:
        return Response(status_code=outcome.status)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response

from consent_client.processor import Outcome, Processor


def processor_dependency(processor: Processor) -> Callable[[Request], Awaitable[Outcome]]:
    async def dependency(request: Request) -> Outcome:
        return await processor.handle(await request.body(), dict(request.headers))

    return dependency


def webhook_router(processor: Processor, path: str = "/consent") -> APIRouter:
    router = APIRouter()
    run = processor_dependency(processor)

    @router.post(path, include_in_schema=False)
    async def receive(request: Request) -> Response:
        outcome = await run(request)
        return Response(status_code=outcome.status)

    return router
