"""Parsing CloudEvents Kafka records (binary mode), state records and webhook bodies.

A :class:`Parser` refuses what it cannot trust with a :class:`MalformedEvent` whose message
says what was wrong, and skips (and counts) what it merely does not know: an event type this
version has no model for parses to ``event=None``; fields it has no attribute for are dropped
and listed in ``unknown_fields``. A new event type or field never breaks a consumer.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consent_client.events import (
    EVENT_TYPES,
    Event,
    MalformedEvent,
    StateRecord,
    SubjectEvent,
    WebhookDelivery,
    decode,
)

try:  # optional speed-up: orjson parses several times faster than json
    import orjson

    def loads(raw: bytes) -> Any:
        return orjson.loads(raw)

    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, UnicodeDecodeError)
except ImportError:  # pragma: no cover - orjson is present wherever the tests run

    def loads(raw: bytes) -> Any:
        return json.loads(raw)

    _JSON_ERRORS = (ValueError, UnicodeDecodeError)

SPEC_VERSION = "1.0"
HeaderInput = Mapping[str, str | bytes] | Iterable[tuple[str, bytes | str | None]] | None


def header_dict(headers: HeaderInput) -> dict[str, str]:
    """Kafka headers (aiokafka gives ``[(name, bytes), ...]``) or a mapping, as ``str → str``."""
    if headers is None:
        return {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for k, v in pairs:
        if v is None:
            continue
        if isinstance(v, bytes):
            try:
                v = v.decode()
            except UnicodeDecodeError:
                raise MalformedEvent(f"header {k}: not UTF-8") from None
        out[k.lower()] = v
    return out


@dataclass(frozen=True, slots=True)
class Envelope:
    """The CloudEvents attributes of a record (its ``ce_*`` headers)."""

    id: str
    type: str
    source: str
    subject: str | None
    time: datetime | None
    subject_sequence: int | None
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ParsedRecord:
    envelope: Envelope
    event: Event | None
    """``None`` when the type is unknown to this version (skipped and counted)."""
    unknown_fields: tuple[str, ...] = ()

    @property
    def subject_id(self) -> str | None:
        if isinstance(self.event, SubjectEvent):
            return self.event.subject_id
        return self.envelope.subject

    @property
    def sequence(self) -> int | None:
        if isinstance(self.event, SubjectEvent):
            return self.event.sequence
        return self.envelope.subject_sequence


@dataclass
class ParserStats:
    parsed: int = 0
    malformed: int = 0
    unknown_types: Counter[str] = field(default_factory=Counter)
    unknown_fields: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "parsed": self.parsed,
            "malformed": self.malformed,
            "unknown_types": dict(self.unknown_types),
            "unknown_fields": dict(self.unknown_fields),
        }


def _json(value: bytes | str | None, what: str) -> Any:
    if value is None:
        raise MalformedEvent(f"{what}: no value (null)")
    try:
        return loads(value if isinstance(value, bytes) else value.encode())
    except _JSON_ERRORS as exc:
        raise MalformedEvent(f"{what}: not JSON ({exc})") from None


class Parser:
    """Stateless apart from its counters (``stats``); one per consumer is enough."""

    def __init__(self) -> None:
        self.stats = ParserStats()

    def _unknown(self, where: str, names: list[str]) -> tuple[str, ...]:
        for n in names:
            self.stats.unknown_fields[f"{where}:{n}"] += 1
        return tuple(names)

    def envelope(self, headers: HeaderInput) -> Envelope:
        h = header_dict(headers)
        missing = [n for n in ("ce_specversion", "ce_id", "ce_type", "ce_source") if not h.get(n)]
        if missing:
            raise MalformedEvent(f"not a CloudEvent: header(s) {', '.join(missing)} missing")
        if h["ce_specversion"] != SPEC_VERSION:
            raise MalformedEvent(f"ce_specversion {h['ce_specversion']!r}: only 1.0 is known")
        ctype = h.get("content-type")
        if ctype is not None and not ctype.split(";")[0].strip().endswith("json"):
            raise MalformedEvent(f"content-type {ctype!r}: expected application/json")
        seq: int | None = None
        raw_seq = h.get("ce_subjectseq")
        if raw_seq is not None:
            if not raw_seq.isdigit():
                raise MalformedEvent(f"ce_subjectseq {raw_seq!r}: expected digits")
            seq = int(raw_seq)
        t: datetime | None = None
        if h.get("ce_time"):
            try:
                t = datetime.fromisoformat(h["ce_time"])
            except ValueError:
                raise MalformedEvent(f"ce_time {h['ce_time']!r}: not an RFC 3339 time") from None
        return Envelope(h["ce_id"], h["ce_type"], h["ce_source"], h.get("ce_subject"), t, seq, h)

    def record(self, headers: HeaderInput, value: bytes | str | None) -> ParsedRecord:
        """One ``consent.events.v1`` (or dead-letter) record in CloudEvents binary mode."""
        try:
            env = self.envelope(headers)
            cls = EVENT_TYPES.get(env.type)
            data = _json(value, f"event {env.id} ({env.type})")
            if cls is None:
                self.stats.unknown_types[env.type] += 1
                return ParsedRecord(env, None)
            unknown: list[str] = []
            try:
                event = decode(cls, data, unknown)
            except MalformedEvent as exc:
                raise MalformedEvent(f"event {env.id} ({env.type}): {exc}") from None
            if isinstance(event, SubjectEvent):
                if env.subject_sequence is not None and env.subject_sequence != event.sequence:
                    raise MalformedEvent(
                        f"event {env.id} ({env.type}): ce_subjectseq {env.subject_sequence} "
                        f"differs from data.sequence {event.sequence}"
                    )
                if env.subject is not None and env.subject != event.subject_id:
                    raise MalformedEvent(
                        f"event {env.id} ({env.type}): ce_subject {env.subject!r} differs "
                        f"from data.subject_id {event.subject_id!r}"
                    )
        except MalformedEvent:
            self.stats.malformed += 1
            raise
        self.stats.parsed += 1
        return ParsedRecord(env, event, self._unknown(env.type, unknown))

    def state(self, key: bytes | str | None, value: bytes | str | None) -> StateRecord | None:
        """One ``consent.state.v1`` value; ``None`` for a tombstone (the subject was erased)."""
        if value is None:
            if key is None:
                self.stats.malformed += 1
                raise MalformedEvent("state tombstone without a key")
            return None
        unknown: list[str] = []
        try:
            data = _json(value, "state record")
            rec = _state_fast(data) or decode(StateRecord, data, unknown)
            if key is not None:
                k = key.decode() if isinstance(key, bytes) else key
                if k != rec.subject_id:
                    raise MalformedEvent(f"state record key {k!r} != subject_id {rec.subject_id!r}")
        except MalformedEvent:
            self.stats.malformed += 1
            raise
        self.stats.parsed += 1
        self._unknown("state", unknown)
        return rec

    def webhook(self, body: bytes | str) -> tuple[WebhookDelivery, tuple[str, ...]]:
        """A processor webhook body; returns the delivery and the unknown field names."""
        unknown: list[str] = []
        try:
            d = decode(WebhookDelivery, _json(body, "webhook body"), unknown)
        except MalformedEvent:
            self.stats.malformed += 1
            raise
        self.stats.parsed += 1
        if d.type not in EVENT_TYPES:
            self.stats.unknown_types[d.type] += 1
        return d, self._unknown("webhook", unknown)


def _state_fast(d: Any) -> StateRecord | None:
    """The common case of a state record, checked without the generic decoder (a view
    catching up reads millions); anything unusual goes the long way for a precise error."""
    if type(d) is not dict or len(d) != 5:
        return None
    sid, seq, decisions = d.get("subject_id"), d.get("sequence"), d.get("decisions")
    jur, updated = d.get("jurisdiction"), d.get("updated_at")
    if (
        type(sid) is not str
        or type(seq) is not int
        or type(decisions) is not dict
        or not (jur is None or type(jur) is str)
        or type(updated) is not str
    ):
        return None
    for v in decisions.values():
        if type(v) is not bool:
            return None
    try:
        at = datetime.fromisoformat(updated)
    except ValueError:
        return None
    return StateRecord(
        subject_id=sid, sequence=seq, decisions=decisions, jurisdiction=jur, updated_at=at
    )


_default = Parser()


def parse_record(headers: HeaderInput, value: bytes | str | None) -> ParsedRecord:
    """:meth:`Parser.record` with a module-level parser (its counts: ``default_stats()``)."""
    return _default.record(headers, value)


def parse_webhook(body: bytes | str) -> WebhookDelivery:
    return _default.webhook(body)[0]


def default_stats() -> ParserStats:
    return _default.stats
