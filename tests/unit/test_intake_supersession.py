"""Within one polled batch, an older live delivery is written as superseded by a newer one."""

from typing import Any

from propagator.intents import DeliveryIntent, superseded_in_batch


def d(processor: str, subject: str, seq: int, **kw: Any) -> DeliveryIntent:
    return DeliveryIntent(
        event_id=f"e-{subject}-{seq}",
        event_type=kw.pop("event_type", "consent.changed"),
        subject_id=subject,
        sequence=seq,
        processor=processor,
        max_attempts=3,
        payload={},
        occurred_at=None,
        **kw,
    )


def test_older_live_delivery_of_the_same_processor_and_subject_is_superseded() -> None:
    batch = [d("email", "s1", 1), d("email", "s1", 3), d("email", "s1", 2)]
    assert superseded_in_batch(batch) == {0, 2}


def test_other_processors_and_subjects_are_independent() -> None:
    batch = [d("email", "s1", 1), d("payment", "s1", 1), d("email", "s2", 1), d("email", "s1", 2)]
    assert superseded_in_batch(batch) == {0}


def test_replays_and_erasures_are_never_superseded() -> None:
    batch = [
        d("email", "s1", 1, replay=True),
        d("email", "s1", 2, event_type="subject.erasure_requested"),
        d("email", "s1", 3),
    ]
    assert superseded_in_batch(batch) == set()


def test_the_same_sequence_twice_supersedes_neither() -> None:
    assert superseded_in_batch([d("email", "s1", 4), d("email", "s1", 4)]) == set()


def test_an_erasure_supersedes_older_live_deliveries_in_its_batch() -> None:
    batch = [
        d("email", "s1", 5),
        d("email", "s1", 6, event_type="subject.erasure_requested"),
        d("payment", "s1", 5),
    ]
    assert superseded_in_batch(batch) == {0}
