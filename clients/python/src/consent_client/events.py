"""Typed models of every event type, of the state topic's value and of webhook bodies.

The models are hand-written dataclasses; ``tests/client/test_events_schema.py`` checks each
one against ``schemas/events/<type>.json`` (field names, which are required, JSON types), so
a schema and its model cannot drift apart unnoticed.

Decoding is strict about what the contract promises (a required field missing, or a field of
the wrong JSON type, is a :class:`MalformedEvent`) and lenient about what it may add later:
fields the model does not know are skipped and counted, never an error. Enumerations
(``channel``, ``reason``, age statuses, ...) are kept as plain strings so a value added by a
newer platform does not break an older consumer.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar, Union


class MalformedEvent(ValueError):
    """A record or body that cannot be decoded, or that breaks its type's contract."""


# --- models -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One recorded status change: ``from`` and ``to`` are ``granted``/``denied``/``unset``."""

    purpose: str
    from_: str = field(metadata={"json": "from"})
    to: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    type: str
    id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event type; ``TYPE`` is its ``ce_type``."""

    TYPE: ClassVar[str] = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectEvent(Event):
    """An event about one subject, carrying its sequence."""

    subject_id: str
    sequence: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionEvent(SubjectEvent):
    """Every event that carries the subject's full effective ``decisions`` after the change."""

    changes: tuple[Change, ...]
    decisions: Mapping[str, bool]
    changed_decisions: tuple[str, ...]
    jurisdiction: str | None
    policy_version: str | None
    channel: str
    actor: Actor
    occurred_at: datetime
    replay: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentChanged(DecisionEvent):
    TYPE: ClassVar[str] = "consent.changed"
    repair: bool = False  # a drift repair (private replays topic only)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentExpired(DecisionEvent):
    TYPE: ClassVar[str] = "consent.expired"
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentLapsed(DecisionEvent):
    """Guardian authority ended (``reason``: ``guardian_revoked`` or ``came_of_age``)."""

    TYPE: ClassVar[str] = "consent.lapsed"
    reason: str | None = None
    from_: str | None = field(default=None, metadata={"json": "from"})
    to: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentReconsentRequired(DecisionEvent):
    """A material policy version took effect: ``policy_version`` is that version."""

    TYPE: ClassVar[str] = "consent.reconsent_required"
    policy_version: str  # required and never null here


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectUpdated(DecisionEvent):
    TYPE: ClassVar[str] = "subject.updated"
    age_status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectAgeStatusChanged(DecisionEvent):
    TYPE: ClassVar[str] = "subject.age_status_changed"
    from_: str = field(metadata={"json": "from"})
    to: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectGuardianLinked(DecisionEvent):
    TYPE: ClassVar[str] = "subject.guardian_linked"
    guardian_id: str
    verification_method: str
    verified_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectGuardianRevoked(DecisionEvent):
    TYPE: ClassVar[str] = "subject.guardian_revoked"
    guardian_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectMerged(DecisionEvent):
    """An anonymous subject was merged into a person; one on each (``role``: ``person`` or
    ``anonymous``). On the anonymous id, ``person_id`` is who it answers for from now on."""

    TYPE: ClassVar[str] = "subject.merged"
    role: str
    person_id: str
    anonymous_id: str
    other_sequence: int
    other_hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectUnmerged(SubjectMerged):
    """A merge undone; one on each subject. The anonymous id answers for itself again."""

    TYPE: ClassVar[str] = "subject.unmerged"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectErasureRequested(SubjectEvent):
    """Forget the subject: delete what you hold and acknowledge."""

    TYPE: ClassVar[str] = "subject.erasure_requested"
    request_id: str
    due_at: datetime
    reason: str
    occurred_at: datetime
    replay: bool = False
    repair: bool = False  # a drift repair (private replays topic only)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyPublished(Event):
    """Key and ``ce_subject`` are ``policy:<version>``; it carries no subject sequence."""

    TYPE: ClassVar[str] = "policy.published"
    version: str
    effective_at: datetime
    material: bool
    affected_purposes: tuple[str, ...]
    description: str | None = None
    published_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryDead(Event):
    """On ``consent.deadletter.v1``: a delivery that failed for good."""

    TYPE: ClassVar[str] = "delivery.dead"
    delivery_id: str
    event_id: str
    event_type: str
    subject_id: str
    sequence: int
    processor: str
    attempts: int
    last_error: str
    response_code: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentCheckpoint(Event):
    """On ``consent.checkpoints.v1`` (key: the tree size): a signed tree head of the
    transparency log over the ledger. Verify it with the raw record, not this model: the
    signature covers ``issued_at`` exactly as published (README, "Compliance")."""

    TYPE: ClassVar[str] = "consent.checkpoint"
    tree_size: int
    root_hash: str
    issued_at: datetime
    key_id: str
    signature: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StateRecord:
    """The value of a ``consent.state.v1`` record (``schemas/state.json``)."""

    subject_id: str
    sequence: int
    decisions: Mapping[str, bool]
    jurisdiction: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookDelivery:
    """A processor webhook's body: only the processor's own purposes are in ``decisions``;
    an erasure carries ``request_id`` instead. ``repair`` deliveries (drift repair) apply
    even at an equal sequence."""

    event_id: str
    type: str
    subject_id: str
    sequence: int
    occurred_at: datetime | None = None
    replay: bool = False
    decisions: Mapping[str, bool] | None = None
    request_id: str | None = None
    repair: bool = False

    @property
    def is_erasure(self) -> bool:
        return self.type == SubjectErasureRequested.TYPE


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        ConsentChanged,
        ConsentExpired,
        ConsentLapsed,
        ConsentReconsentRequired,
        SubjectUpdated,
        SubjectAgeStatusChanged,
        SubjectGuardianLinked,
        SubjectGuardianRevoked,
        SubjectMerged,
        SubjectUnmerged,
        SubjectErasureRequested,
        PolicyPublished,
        DeliveryDead,
        ConsentCheckpoint,
    )
}
"""``ce_type`` → model, one per ``schemas/events/*.json``."""


# --- decoding -----------------------------------------------------------------------------

T = TypeVar("T")
Decoder = typing.Callable[[Any, str, list[str]], Any]


def _fail(path: str, what: str, value: Any) -> MalformedEvent:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return MalformedEvent(f"{path}: expected {what}, got {shown}")


def _scalar(kind: type) -> Decoder:
    def dec(v: Any, path: str, unknown: list[str]) -> Any:
        if type(v) is not kind:  # bool is not an int here, nor an int a bool
            raise _fail(path, kind.__name__, v)
        return v

    return dec


def _datetime(v: Any, path: str, unknown: list[str]) -> datetime:
    if not isinstance(v, str):
        raise _fail(path, "an RFC 3339 time", v)
    try:
        return datetime.fromisoformat(v)
    except ValueError:
        raise _fail(path, "an RFC 3339 time", v) from None


def _decoder(tp: Any) -> Decoder:
    origin = typing.get_origin(tp)
    if tp in (str, int, bool):
        return _scalar(tp)
    if tp is datetime:
        return _datetime
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = _decoder(args[0])
        return lambda v, p, u: None if v is None else inner(v, p, u)
    if origin is tuple:
        item = _decoder(typing.get_args(tp)[0])

        def dec_tuple(v: Any, path: str, unknown: list[str]) -> Any:
            if not isinstance(v, list):
                raise _fail(path, "an array", v)
            return tuple(item(x, f"{path}[{i}]", unknown) for i, x in enumerate(v))

        return dec_tuple
    if origin in (Mapping, dict, typing.Mapping) or tp is Mapping:
        value = _decoder(typing.get_args(tp)[1])

        def dec_map(v: Any, path: str, unknown: list[str]) -> Any:
            if not isinstance(v, dict):
                raise _fail(path, "an object", v)
            return {k: value(x, f"{path}.{k}", unknown) for k, x in v.items()}

        return dec_map
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        cls: type[Any] = tp
        return lambda v, p, u: _decode_object(cls, v, p, u)
    raise TypeError(f"no decoder for {tp!r}")  # pragma: no cover - a model bug


_PLANS: dict[type, list[tuple[str, str, Decoder, bool]]] = {}


def plan(cls: type) -> list[tuple[str, str, Decoder, bool]]:
    """(json name, attribute, decoder, required) for each field of a model."""
    cached = _PLANS.get(cls)
    if cached is None:
        hints = typing.get_type_hints(cls)
        cached = []
        for f in dataclasses.fields(cls):
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            cached.append(
                (f.metadata.get("json", f.name), f.name, _decoder(hints[f.name]), required)
            )
        _PLANS[cls] = cached
    return cached


def _decode_object(cls: type[T], v: Any, path: str, unknown: list[str]) -> T:
    if not isinstance(v, dict):
        raise _fail(path or cls.__name__, "a JSON object", v)
    kwargs: dict[str, Any] = {}
    known = 0
    for name, attr, dec, required in plan(cls):
        if name in v:
            known += 1
            kwargs[attr] = dec(v[name], f"{path}.{name}" if path else name, unknown)
        elif required:
            raise MalformedEvent(f"{path + '.' if path else ''}{name}: required field missing")
    if known < len(v):
        names = {n for n, *_ in plan(cls)}
        unknown.extend(f"{path}.{k}" if path else k for k in v if k not in names)
    return cls(**kwargs)


def decode(cls: type[T], data: Any, unknown: list[str] | None = None) -> T:
    """Decode a parsed JSON value into model ``cls``; names of unknown fields (dotted paths)
    are appended to ``unknown``. Raises :class:`MalformedEvent`."""
    return _decode_object(cls, data, "", unknown if unknown is not None else [])
