"""What a processor holds, from its receipts, and where it differs (domain/drift.py)."""

from __future__ import annotations

from consent.domain.drift import ERASURE, Held, differences, held_answers

UNWRITTEN = {"sale": False, "share": False, "marketing_email": False}


def test_nothing_acknowledged_holds_what_a_never_written_subject_answers() -> None:
    assert held_answers(None, ["sale", "share"], UNWRITTEN) == {"sale": False, "share": False}
    found, _ = differences("s", {"p": ["sale"]}, {}, {"sale": True}, UNWRITTEN)
    assert [(d.purpose, d.delivered, d.current) for d in found] == [("sale", False, True)]


def test_an_acknowledged_erasure_holds_nothing() -> None:
    held = Held(sequence=4, event_type=ERASURE, decisions=None)
    assert held_answers(held, ["sale"], {"sale": True}) == {"sale": False}


def test_a_purpose_the_delivery_did_not_carry_counts_as_never_told() -> None:
    held = Held(sequence=2, event_type="consent.changed", decisions={"sale": True})
    assert held_answers(held, ["sale", "share"], UNWRITTEN) == {"sale": True, "share": False}


def test_receipts_without_decisions_are_unknown_not_drift() -> None:
    held = {"p": Held(sequence=2, event_type="consent.changed", decisions=None)}
    found, unknown = differences("s", {"p": ["sale"]}, held, {"sale": True}, UNWRITTEN)
    assert found == [] and unknown == ["p"]


def test_only_the_processors_purposes_are_compared() -> None:
    held = {"p": Held(sequence=1, event_type="consent.changed", decisions={"sale": False})}
    current = {"sale": False, "marketing_email": True}
    assert differences("s", {"p": ["sale"]}, held, current, UNWRITTEN) == ([], [])
