"""The invariant, as a model-based test: **every processor holds the answer the decision API
gives, and no processor ever applies a subject's events out of order, whatever happens.**

Hypothesis draws programs of steps: preference writes, GPC signals, profile changes with
birth dates, guardian links, guardian grants and revocations, material policy versions
with effective times, erasures, imported rows (with their own times), devices merged into
a subject, processor failures and recoveries, and an injected clock
jumping across birthdays, effective dates and validity periods. After each step the
scheduler runs at the model's ``now`` and the real relay and propagator drain to real HTTP
processors; then, for every healthy processor, its last applied decisions must equal
``decisions_for(subject, now)`` on its purposes, and the drift report (which knows only the
receipts the consent service projects) must list exactly where a processor's applied
decisions differ: nothing for a healthy one. At the end ``ledger verify`` finds nothing:
whatever was recorded is provable. Real PostgreSQL, the real broker.

Small by default (CI); ``CONSENT_MODEL_EXAMPLES=200`` runs longer.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent.adapters.db import make_engine, make_sessionmaker
from consent.adapters.repositories import SubjectRepository
from consent.domain.model import Actor, DomainError
from consent.service import aliases, erasure, guardians, policies, preferences
from consent.service import imports as import_svc
from consent.service.age_transitions import record_age_transitions
from consent.service.context import WriteContext
from consent.service.decisions import decisions_for
from consent.service.drift import full_report
from consent.service.expiry import expire_due
from consent.service.processors import KnownProcessor
from consent.service.reconsent import announce_reconsent
from consent.service.recorder import invalidate_policies, load_policies
from consent.service.unit_of_work import UnitOfWork
from consent.settings import Settings
from consent_common.db import plain_url
from consentctl.ledger import verify_all
from tests.support import RecordingProcessor, running_stack, serving, settle

EXAMPLES = int(os.environ.get("CONSENT_MODEL_EXAMPLES", "4"))
PURPOSES = {
    "email": ["marketing_email", "marketing_sms"],
    "payment": ["sale", "share", "third_party_sharing"],
}
SUBJECTS = 3
COUNTER = itertools.count()
CLOCK = [datetime.now(UTC)]  # the latest time any example's clock reached

step = st.one_of(
    st.tuples(st.just("profile"), st.integers(0, SUBJECTS - 1),
              st.sampled_from(["DE", "US-CA", "US-TX", "GB"]),
              st.sampled_from([None, 9, 12, 14, 15, 17, 30])),
    st.tuples(st.just("change"), st.integers(0, SUBJECTS - 1),
              st.sampled_from(["marketing_email", "marketing_sms", "sale", "share",
                               "third_party_sharing", "analytics"]),
              st.sampled_from(["granted", "denied"])),
    st.tuples(st.just("gpc"), st.integers(0, SUBJECTS - 1)),
    st.tuples(st.just("link"), st.integers(0, SUBJECTS - 1)),
    st.tuples(st.just("guardian_grant"), st.integers(0, SUBJECTS - 1),
              st.sampled_from(["marketing_email", "third_party_sharing"])),
    st.tuples(st.just("revoke"), st.integers(0, SUBJECTS - 1)),
    st.tuples(st.just("policy"),
              st.sampled_from(["marketing_email", "sale", "third_party_sharing"]),
              st.sampled_from([-1, 1, 48])),
    st.tuples(st.just("advance"),
              st.sampled_from([1, 24 * 10, 24 * 200, 24 * 400, 24 * 365 * 3])),
    st.tuples(st.just("erase"), st.integers(0, SUBJECTS - 1)),
    st.tuples(st.just("import"), st.integers(0, SUBJECTS - 1),
              st.sampled_from(["marketing_email", "sale", "third_party_sharing"]),
              st.sampled_from(["granted", "denied"]), st.sampled_from([1, 24 * 400])),
    st.tuples(st.just("merge"), st.integers(0, SUBJECTS - 1),
              st.sampled_from(["granted", "denied"])),
    st.tuples(st.just("fail"), st.sampled_from(["email", "payment"])),
    st.tuples(st.just("recover"), st.sampled_from(["email", "payment"])),
)  # fmt: skip


class Model:
    """The world the steps act on: the clock, which processors fail, the subjects."""

    def __init__(self, sessions: Any, prefix: str) -> None:
        self.sessions = sessions
        # one clock across examples, never going back: policies are global, and a version
        # announced at a later example's time must stay in the past for the next example
        self.now = max(datetime.now(UTC), CLOCK[0]).replace(microsecond=0)
        self.failing: set[str] = set()
        self.prefix = prefix + "-"
        self.ids = [f"{prefix}-s{i}" for i in range(SUBJECTS)]
        self.policy_n = 0

    async def write(self, fn: Any) -> None:
        """One unit of work; a rule conflict is a refusal that changes nothing."""
        async with self.sessions() as session:
            uow = UnitOfWork(session)
            try:
                await fn(uow)
            except (DomainError, LookupError, ValueError):
                await uow.rollback()
                return
            await uow.commit()

    def ctx(self, sid: str, **kw: Any) -> WriteContext:
        return WriteContext(kw.pop("channel", "web"), kw.pop("actor", Actor("subject", sid)),
                            now=self.now, **kw)  # fmt: skip

    async def apply(self, s: tuple[Any, ...]) -> None:
        kind = s[0]
        if kind == "profile":
            sid, jurisdiction, age = self.ids[s[1]], s[2], s[3]
            birth = None if age is None else date(self.now.year - age, 6, 15)
            await self.write(lambda u: preferences.put_subject(
                u, sid, jurisdiction=jurisdiction, birth_date=birth, may_write_minors=True,
                ctx=self.ctx(sid, channel="api", actor=Actor("service", "model"))))  # fmt: skip
        elif kind == "change":
            sid = self.ids[s[1]]
            await self.write(
                lambda u: preferences.change_preferences(u, sid, {s[2]: s[3]}, self.ctx(sid))
            )
        elif kind == "gpc":
            sid = self.ids[s[1]]
            await self.write(lambda u: preferences.gpc_on_read(u, sid, self.ctx(sid)))
        elif kind == "link":
            sid = self.ids[s[1]]
            await self.write(lambda u: guardians.link(
                u, sid, f"g-{sid}", method="card_transaction", reference="tx",
                verified_at=self.now, ctx=self.ctx(sid, channel="api",
                                                   actor=Actor("service", "model"))))  # fmt: skip
        elif kind == "guardian_grant":
            sid = self.ids[s[1]]
            ctx = self.ctx(sid, channel="guardian", actor=Actor("guardian", f"g-{sid}"),
                           acting_guardian=f"g-{sid}")  # fmt: skip
            await self.write(
                lambda u: preferences.change_preferences(u, sid, {s[2]: "granted"}, ctx)
            )
        elif kind == "revoke":
            sid = self.ids[s[1]]
            await self.write(lambda u: guardians.revoke(u, sid, f"g-{sid}", self.ctx(sid)))
        elif kind == "policy":
            self.policy_n += 1
            version = f"{self.ids[0]}-p{self.policy_n}"
            effective = self.now + timedelta(hours=s[2])
            await self.write(lambda u: policies.publish(
                u, version=version, effective_at=effective, material=True,
                affected_purposes=[s[1]], description=None, now=self.now))  # fmt: skip
            invalidate_policies()
        elif kind == "advance":
            self.now += timedelta(hours=s[1])
            CLOCK[0] = max(CLOCK[0], self.now)
        elif kind == "erase":
            sid = self.ids[s[1]]
            await self.write(lambda u: erasure.request_erasure(u, sid, self.ctx(sid)))
        elif kind == "import":  # a CRM's row, with its own time (hours before today)
            sid, purpose, status, hours = self.ids[s[1]], s[2], s[3], s[4]
            at = datetime.now(UTC) - timedelta(hours=hours, seconds=next(COUNTER))
            row = {"subject_id": sid, "purpose": purpose, "status": status,
                   "occurred_at": at.isoformat(), "channel": "web"}  # fmt: skip
            job_id, _ = await import_svc.start(
                self.sessions, orjson.dumps(row) + b"\n", "jsonl", actor="model"
            )
            await import_svc.run(self.sessions, job_id)
        elif kind == "merge":  # a device's choices, then the device merged into the subject
            sid, device = self.ids[s[1]], f"{self.ids[s[1]]}-d{next(COUNTER)}"
            choices = {"analytics": "granted", "sale": s[2], "marketing_email": s[2]}
            await self.write(lambda u: preferences.change_preferences(
                u, device, choices, self.ctx(device)))  # fmt: skip
            ctx = self.ctx(sid, channel="api", actor=Actor("service", "model"))
            await self.write(lambda u: aliases.link(u, sid, device, ctx))
        elif kind == "fail":
            self.failing.add(s[1])
        elif kind == "recover":
            self.failing.discard(s[1])

    async def run_scheduler(self) -> None:
        """Until it has caught up: a job pass is bounded by its budget and the outbox backlog,
        and material versions published by earlier examples (policies are global) may come
        into effect at this example's clock, with every earlier subject to tell."""
        for _ in range(50):
            told = 0
            for job in (expire_due, announce_reconsent, record_age_transitions):
                told += await job(self.sessions, self.now)
            async with self.sessions() as session:
                pending = await UnitOfWork(session).due.policies_to_announce(self.now)
            if not told and not pending:
                return
        raise AssertionError("the scheduler never caught up")

    async def answers(self, sid: str) -> dict[str, bool]:
        async with self.sessions() as session:
            snapshot = await SubjectRepository(session).snapshot(sid)
            pols = await load_policies(UnitOfWork(session))
        return {k: d.allowed for k, d in decisions_for(snapshot, pols, self.now).items()}


def held(processor: RecordingProcessor, sid: str) -> tuple[dict[str, bool], list[int]]:
    """What the processor applied last for the subject (what it never heard of: denied),
    and the sequences it applied, in the order it applied them."""
    applied = [
        r for r in processor.requests if 200 <= r.status < 300 and r.body["subject_id"] == sid
    ]
    state = dict.fromkeys(PURPOSES[processor.name], False)
    for r in applied:
        if r.body["type"] == "subject.erasure_requested":
            state = dict.fromkeys(state, False)
        else:
            state.update(r.body["decisions"])
    return state, [int(r.body["sequence"]) for r in applied]


@pytest.mark.timeout(900)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=st.lists(step, min_size=4, max_size=14))
async def test_every_processor_converges_on_the_decision_api(
    program: list[tuple[Any, ...]], topics: Settings, processor_secrets: dict[str, str], db
) -> None:

    settings_ = topics.model_copy(update={"scheduler_enabled": False})
    engine = make_engine(plain_url(settings_.database_url or ""), pool_size=4)
    model = Model(make_sessionmaker(engine), f"m{next(COUNTER)}")
    print("PROGRAM", model.ids[0], program)
    processors = {n: RecordingProcessor(n, processor_secrets[n]) for n in PURPOSES}
    for p in processors.values():
        p.responder = lambda r, name=p.name: 503 if name in model.failing else 204
    configs = [
        processors["email"].config("TEST_EMAIL_SECRET", PURPOSES["email"],
                                   events=["consent.changed"], **FAST),
        processors["payment"].config("TEST_PAYMENT_SECRET", PURPOSES["payment"],
                                     events=[], **FAST),
    ]  # fmt: skip
    try:
        async with (
            serving(*processors.values()),
            running_stack(settings_, configs, receipts=True),
        ):
            for s in program:
                await model.apply(s)
                await model.run_scheduler()
                await settle(db, model.failing)
                await check(model, processors, model.failing, db)
            model.failing.clear()  # everyone recovers: everyone converges
            await settle(db)
            await check(model, processors, set(), db)
        # and everything recorded is provable: chains, projection, subject rows, the log
        _, problems = await verify_all(settings_.database_url or "", show_progress=False)
        assert [p for p in problems if p.subject_id.startswith(model.prefix)] == []
    finally:
        await engine.dispose()


FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "max_attempts": 100,
        "recovery_probe_s": 0.2}  # fmt: skip


async def check(
    model: Model, processors: dict[str, RecordingProcessor], failing: set[str], db: Any
) -> None:
    """What each healthy processor applied equals the decision API's answers; and the drift
    report, which knows only the receipts, lists exactly where a processor's applied
    decisions differ: nothing for a healthy one, what it has not applied for a failing one."""
    known = {n: KnownProcessor(n, tuple(p)) for n, p in PURPOSES.items()}
    drift = await full_report(model.sessions, known, model.now)
    assert drift.unknown == 0
    for sid in model.ids:
        answers = await model.answers(sid)
        trail = [tuple(r) for r in await db.fetch(
            "SELECT processor, sequence, event_type, status, last_error FROM "
            "propagator.deliveries WHERE subject_id = $1 ORDER BY created_at", sid)]  # fmt: skip
        for name, processor in processors.items():
            state, sequences = held(processor, sid)
            assert sequences == sorted(sequences), (name, sid, "applied out of order", sequences)
            want = {p: answers[p] for p in PURPOSES[name]}
            if name not in failing:
                assert state == want, (name, sid, model.now, state, want, trail)
            reported = {(d.purpose, d.delivered) for d in drift.items
                        if d.subject_id == sid and d.processor == name}  # fmt: skip
            expected = {(p, v) for p, v in state.items() if v != want[p]}
            assert reported == expected, (name, sid, reported, state, want, trail)
