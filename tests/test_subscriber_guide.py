"""The subscriber guide's consumer, run as written against real events."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from consent.settings import Settings
from tests.conftest import admin
from tests.support import running_stack

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "subscriber.py"


def load_example():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("subscriber_example", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def test_subscriber_keeps_latest_decisions_and_drops_duplicates(client, topics: Settings):
    example = load_example()
    async with running_stack(topics):
        for sid, purposes in [
            ("a", {"analytics": "granted"}),
            ("b", {"sale": "denied"}),
            ("a", {"analytics": "denied"}),
            ("c", {"analytics": "granted"}),
        ]:
            r = await client.patch(
                f"/v1/subjects/{sid}/preferences", headers=admin(), json={"purposes": purposes}
            )
            assert r.status_code == 200
        r = await client.post("/v1/subjects/c/erasure", headers=admin())
        assert r.status_code == 202
        store, subscriber = await example.consume(
            topics.kafka_bootstrap, "guide-group", topics.events_topic, max_idle_s=1
        )
    assert store.decisions["a"]["analytics"] is False
    assert store.decisions["b"]["sale"] is False
    assert "c" not in store.decisions
    assert subscriber.store.sequences == {"a": 2, "b": 1, "c": 2}
    # the same records again (a redelivery) change nothing
    before = dict(store.decisions)
    again, second = await example.consume(
        topics.kafka_bootstrap,
        "guide-group-2",
        topics.events_topic,
        store=store,
        seen=subscriber.store,
        max_idle_s=1,
    )
    assert again.decisions == before
    assert second.stats.handled == 0 and second.stats.duplicates + second.stats.stale == 5
