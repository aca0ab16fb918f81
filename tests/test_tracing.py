"""One PATCH, one trace: the API's request span, the relay's publish, the propagator's
intake and the webhook attempt share a trace id, the incoming ``traceparent`` is continued,
the processor receives the W3C header, and no span attribute holds the subject id.

Tracing is configured once per process with an in-memory exporter (the global tracer
provider cannot be replaced), so this module's spans are read from that exporter."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consent.api.app import create_app
from consent.settings import Settings
from consent_common import tracing
from tests.conftest import admin, eventually
from tests.support import RecordingProcessor, running_stack, serving

EXPORTER = InMemorySpanExporter()
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module", autouse=True)
def tracing_on() -> Iterator[None]:
    if not tracing.configure("consent-tests", exporters=[EXPORTER]):
        pytest.fail("tracing could not be configured")
    yield
    EXPORTER.clear()
    EXPORTER.shutdown()  # later tests' spans are dropped, not kept in memory


def spans_of(trace_id: str) -> list[ReadableSpan]:
    provider = trace.get_tracer_provider()
    provider.force_flush()  # type: ignore[attr-defined]
    return [s for s in EXPORTER.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]


@pytest.mark.timeout(120)
async def test_one_patch_is_one_trace_across_api_relay_propagator_and_processor(
    topics: Settings, processor_secrets: dict[str, str]
) -> None:
    email = RecordingProcessor("email", processor_secrets["email"])
    config = email.config("TEST_EMAIL_SECRET", ["marketing_email"])
    subject = "traced-person-0042"
    app = create_app(topics)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
        serving(email),
        running_stack(topics, [config]),
    ):
        r = await c.patch(
            f"/v1/subjects/{subject}/preferences?x=1",
            headers={**admin(), "traceparent": INCOMING},
            json={"purposes": {"marketing_email": "granted"}},
        )
        assert r.status_code == 200, r.text
        await eventually(lambda: email.applied(), timeout=30)

        def complete() -> list[ReadableSpan] | None:
            names = {s.name for s in spans_of(TRACE_ID)}
            wanted = {"consent.relay publish", "consent.intake", "consent.webhook"}
            return spans_of(TRACE_ID) if wanted <= names else None

        spans = await eventually(complete, timeout=15)
    names = {s.name for s in spans}
    assert "PATCH /v1/subjects/{subject_id}/preferences" in names  # the request, continued
    server = next(s for s in spans if s.name.startswith("PATCH"))
    assert f"{server.parent.span_id:016x}" == INCOMING.split("-")[2]  # type: ignore[union-attr]
    # the webhook carried the trace to the processor
    sent = email.applied()[0].headers["traceparent"]
    assert sent.split("-")[1] == TRACE_ID
    webhook = next(s for s in spans if s.name == "consent.webhook")
    assert sent.split("-")[2] == f"{webhook.context.span_id:016x}"
    # each hop is a child of the previous one
    by_id = {s.context.span_id: s for s in spans}
    intake = next(s for s in spans if s.name == "consent.intake")
    publish = by_id[intake.parent.span_id]  # type: ignore[union-attr]
    assert publish.name == "consent.relay publish"
    assert by_id[webhook.parent.span_id].name == "consent.intake"  # type: ignore[union-attr]
    # no subject id, path or query in any attribute of any span of the trace
    for s in spans:
        for key, value in (s.attributes or {}).items():
            assert subject not in str(value), (s.name, key, value)
            assert "x=1" not in str(value), (s.name, key, value)
