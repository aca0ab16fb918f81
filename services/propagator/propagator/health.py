"""Processor health, shared by every replica (``processor_health``): how long a processor has
failed without one success, and whether it is disabled.

A processor that keeps failing for ``disable_after_s`` (default five days, as webhook
gateways do) is disabled: the workers stop sending to it (no probes either), the intake
keeps queueing its deliveries, nothing is dropped, ``consent_processor_disabled`` raises an
alert. Only an operator enables it again (``consentctl processors enable``,
``POST /v1/processors/{name}/enable`` on the propagator's API); enabling redrives what died
of an exhausted retry budget, and the pending deliveries go out in order.

How this combines with the automatic redrive (``worker.py``): while a processor is enabled,
a recovery probe now and then finds out when it answers again and then redrives what it
missed, with no operator. Disabling ends that: a disabled processor is never probed, since
someone decided (or the time limit decided) that it is gone until told otherwise.

These are the rules; the statements are ``repositories/health.py``'s, and the caller's
unit of work (``unit_of_work.py``) holds them together."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from propagator.repositories.health import ProcessorState
from propagator.unit_of_work import UnitOfWork


async def note(
    uow: UnitOfWork,
    processor: str,
    *,
    succeeded: bool,
    failed: bool,
    error: str | None,
    disable_after_s: float,
) -> bool:
    """Record a batch's outcome: a success clears the failing streak, a failure starts or
    extends it and disables the processor once the streak is older than
    ``disable_after_s``. True when this call disabled it (audited)."""
    if not await uow.health.note(
        processor,
        succeeded=succeeded,
        failed=failed,
        error=(error or "")[:200] or None,
        disable_after_s=disable_after_s,
    ):
        return False
    await uow.outbox.audit(
        "propagator",
        "processor.disabled",
        {"processor": processor},
        {"disable_after_s": disable_after_s},
        reference=processor,
    )
    return True


async def enable(uow: UnitOfWork, processor: str, actor: str) -> int | None:
    """Enable a disabled processor and redrive what died of exhausted retries while it was
    failing; None when it was not disabled. Audited; the workers are woken on commit."""
    if not await uow.health.enable(processor):
        return None
    redriven = await uow.deliveries.redrive_exhausted(processor)
    await uow.outbox.audit(
        actor,
        "processor.enabled",
        {"processor": processor},
        {"redriven": redriven},
        reference=processor,
    )
    await uow.deliveries.wake_workers()
    return redriven


async def report(uow: UnitOfWork) -> list[dict[str, Any]]:
    """Every processor with an outcome so far, as the API and ``consentctl`` show it."""
    states = await uow.health.states()
    now = await uow.clock.now()
    return [describe(s, now) for s in states]


def describe(state: ProcessorState, now: datetime) -> dict[str, Any]:
    """A processor's state as the API shows it (times as RFC 3339)."""

    def at(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    failing = state.failing_since
    return {
        "processor": state.processor,
        "disabled": state.disabled_at is not None,
        "disabled_at": at(state.disabled_at),
        "disabled_reason": state.disabled_reason,
        "failing_since": at(failing),
        "failing_for_s": round((now - failing).total_seconds(), 1) if failing else 0.0,
        "last_success_at": at(state.last_success_at),
        "last_failure_at": at(state.last_failure_at),
        "last_error": state.last_error,
    }
