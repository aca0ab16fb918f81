"""Who may call an operation, said once per route: ``needs(...)`` is the route's dependency,
which enforces it, and the OpenAPI document's ``security`` is read from the same object
(consent.api.openapi), so what a generated client is told and what the server does cannot
drift apart. A route without one takes no credentials at all (``security: []``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Request

from consent.api.auth import SCOPES, USER_SCOPES, Principal
from consent.api.deps import Caller, UoW
from consent.api.problems import Problem
from consent.service.context import utcnow
from consent.service.decisions import age_status_of
from consent.service.unit_of_work import UnitOfWork

Role = Literal["subject", "guardian", "named-guardian"]
# What an end user's token must be to call an operation (the `UserToken` roles).
ROLES: dict[str, str] = {
    "subject": "the token's `sub` is the subject the operation is about (the path's "
    "`subject_id`, or every item's `subject_id` in a batch)",
    "guardian": "the token's `sub` is an active, verified guardian of that subject, who is a minor",
    "named-guardian": "the token's `sub` is the path's `guardian_id`",
}
MINOR = frozenset({"child", "teen_opt_in"})
# The default: the person, or a guardian for a minor.
OWN: tuple[Role, ...] = ("subject", "guardian")


@dataclass(frozen=True, eq=False)
class Access:
    """``scopes``: a service key needs one of them (``admin`` implies all); none: any key.
    ``roles``: an end user's token must have one of them; ``()``: any user token;
    ``None``: no user token at all."""

    scopes: tuple[str, ...]
    roles: tuple[Role, ...] | None

    def __post_init__(self) -> None:
        unknown = set(self.scopes) - set(SCOPES) or set(self.roles or ()) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown scopes or roles: {sorted(unknown)}")
        acting = set(self.roles or ()) & {"subject", "guardian"}
        if acting and self.scopes and not set(self.scopes) & USER_SCOPES:
            raise ValueError(f"a user token never holds {self.scopes}: it cannot act here")

    def security(self) -> list[dict[str, list[str]]]:
        """OpenAPI security requirements, one per alternative (any one of them is enough)."""
        scopes = dict.fromkeys([*self.scopes, "admin"]) if self.scopes else {}
        alternatives = [{"ApiKey": [s]} for s in scopes] or [{"ApiKey": []}]
        if self.roles is not None:
            alternatives += [{"UserToken": [r]} for r in self.roles] or [{"UserToken": []}]
        return alternatives

    async def __call__(self, request: Request, uow: UoW, principal: Caller) -> Granted:
        if principal.kind == "key":
            if self.scopes and not any(principal.has(s) for s in self.scopes):
                needed = " or ".join(repr(s) for s in self.scopes)
                raise Problem(403, f"This credential lacks the {needed} scope.")
            return Granted(self, principal, None)
        if self.roles is None:
            raise Problem(403, "This operation takes a service key, not a user's token.")
        path = request.path_params
        if self.roles == () or (
            "named-guardian" in self.roles and principal.id == path.get("guardian_id")
        ):
            return Granted(self, principal, None)
        if not set(self.roles) & {"subject", "guardian"}:
            raise Problem(403, "This token may not act here.")
        subject = path.get("subject_id")
        if subject is None:
            return Granted(self, principal, None)  # a batch checks each item's subject
        return Granted(self, principal, await self.acts_for(principal, subject, uow))

    async def acts_for(self, principal: Principal, subject_id: str, uow: UnitOfWork) -> str | None:
        """The guardian's id when a guardian's token acts for a linked minor; None when the
        person acts for themself; refused otherwise."""
        if "subject" in (self.roles or ()) and principal.id == subject_id:
            return None
        if "guardian" in (self.roles or ()) and await uow.guardians.is_active_guardian(
            subject_id, principal.id
        ):
            snapshot = await uow.subjects.snapshot(subject_id)
            if age_status_of(snapshot, utcnow()) in MINOR:
                return principal.id  # a guardian acts for a linked minor, and only a minor
        raise Problem(403, "This token may not act for that subject.")


@dataclass(frozen=True)
class Granted:
    """The caller, let in; ``guardian`` is set when a guardian's token acts for a minor."""

    access: Access
    principal: Principal
    guardian: str | None

    async def for_subject(self, subject_id: str, uow: UnitOfWork) -> str | None:
        """For operations naming subjects in their body (a batch): check one of them."""
        if self.principal.kind == "key" or self.access.roles == ():
            return None
        return await self.access.acts_for(self.principal, subject_id, uow)


def needs(*scopes: str, users: Sequence[Role] | None = OWN) -> Any:
    """The dependency for ``Annotated[Granted, needs(...)]``."""
    return Depends(Access(scopes, None if users is None else tuple(users)))


Admin = Annotated[Granted, needs("admin", users=None)]
