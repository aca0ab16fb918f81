"""Who may say what: which channels a credential may record, who may change a minor's
age-relevant facts, and whose evidence a reader may see. Pure rules: the ledger is legal
proof, so it must record who really acted, never what a caller claims."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Channels a request may name, per kind of credential (API.md "Who may record what").
USER_CHANNELS = frozenset({"web", "ios", "android"})
KEY_CHANNELS = USER_CHANNELS | {"api", "import"}
# Recorded only by the platform itself (GPC header, guardian acting, scheduler, operator).
PLATFORM_CHANNELS = frozenset({"gpc", "guardian", "system", "operator"})
MINOR_STATUSES = frozenset({"child", "teen_opt_in"})


class NotPermitted(Exception):
    """The caller is authenticated but may not do this (HTTP 403 with ``code``)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class ChannelNotAllowed(ValueError):
    """A request named a channel its credential may not record (HTTP 422)."""


@dataclass(frozen=True)
class ChannelChoice:
    channel: str  # what the ledger records
    device: str | None  # the device channel a guardian used, kept in the evidence


def default_channel(credential: str, *, admin: bool = False) -> str:
    """The channel a write records when the request names none, decided here only: ``web``
    for a user token, ``api`` for a service key, ``operator`` for an admin key acting on its
    own authority (a guardian link, a merge, an erasure for cause). A preference write by
    an admin key defaults like any key's (API.md: ``context.channel``)."""
    if credential == "user":
        return "web"
    return "operator" if admin else "api"


def choose_channel(
    credential: str, requested: str | None, *, acting_guardian: bool
) -> ChannelChoice:
    """``credential`` is ``user`` or ``key``. Nothing outside the credential's list is
    rewritten silently: it is refused."""
    allowed = USER_CHANNELS if credential == "user" else KEY_CHANNELS
    if requested is not None and requested not in allowed:
        who = "a user token" if credential == "user" else "an API key"
        raise ChannelNotAllowed(
            f"channel {requested!r} cannot be recorded by {who}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    default = default_channel(credential)
    if acting_guardian:
        return ChannelChoice("guardian", requested or default)
    return ChannelChoice(requested or default, None)


def check_minor_profile_change(
    age_status_now: str,
    *,
    changes_age_facts: bool,
    may_write_minors: bool,
    acting_guardian: bool,
) -> None:
    """A known minor's birth date and jurisdiction decide how much protection they get, so
    only a ``minors:write`` service (a verified correction, a move checked by support) or a
    linked guardian may change them. Adding facts to an adult or an unknown-age subject is
    not restricted: that can only add protection or knowledge."""
    if not changes_age_facts or age_status_now not in MINOR_STATUSES:
        return
    if may_write_minors or acting_guardian:
        return
    raise NotPermitted(
        "minor_profile_locked",
        "This subject is a minor: their birth date and jurisdiction can be changed only by "
        "a linked guardian or a service with the 'minors:write' scope.",
    )


# Evidence that identifies the person or device who acted, or a verification document.
PERSONAL_EVIDENCE = ("ip_hash", "user_agent", "note")


@dataclass(frozen=True)
class Reader:
    """Who reads history or an export: ``operator`` (admin key), ``service`` (any other
    key), ``subject`` (own token) or ``guardian`` (token acting for a linked minor)."""

    kind: str
    id: str


def visible_evidence(
    evidence: Mapping[str, Any] | None, reader: Reader, actor_type: str, actor_id: str | None
) -> dict[str, Any] | None:
    """Operators see everything (legal proof). Everyone else sees the evidence of their
    own acts in full, and of other people's acts only what is not personal to the actor:
    a child does not read the guardian's IP hash, user agent or verification reference,
    and a frontend service does not read any of them."""
    if evidence is None:
        return None
    if reader.kind == "operator":
        return dict(evidence)
    own = (
        reader.kind in ("subject", "guardian")
        and actor_id == reader.id
        and (actor_type == reader.kind)
    )
    if own:
        return dict(evidence)
    out = {k: v for k, v in evidence.items() if k not in PERSONAL_EVIDENCE}
    withheld = [k for k in PERSONAL_EVIDENCE if evidence.get(k) is not None]
    verification = evidence.get("verification")
    if isinstance(verification, Mapping) and "reference" in verification:
        out["verification"] = {k: v for k, v in verification.items() if k != "reference"}
        withheld.append("verification.reference")
    if withheld:
        out["withheld"] = withheld
    return out
