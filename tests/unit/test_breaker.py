"""The rate limit and the circuit breaker in front of each processor (propagator/breaker.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from propagator.breaker import Circuit, CircuitBreaker, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@given(
    rate=st.floats(1, 500),
    gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=300),
)
def test_no_window_gets_more_than_the_rate_plus_the_burst(rate: float, gaps: list[float]) -> None:
    """Requests go out when the limiter says (arrival + delay): in any window of T seconds at
    most burst + rate·T of them, however they arrive."""
    clock = Clock()
    limiter = RateLimiter(rate, clock=clock)
    sent: list[float] = []
    for gap in gaps:
        clock.now += gap
        sent.append(clock.now + limiter.delay())
    sent.sort()
    for i, start in enumerate(sent):
        for j in range(i, len(sent)):
            window = sent[j] - start
            assert j - i + 1 <= limiter.burst + rate * window + 1e-6


def test_a_steady_stream_under_the_rate_is_never_delayed() -> None:
    clock = Clock()
    limiter = RateLimiter(10, clock=clock)
    for _ in range(100):
        clock.now += 0.105  # 9.5 a second
        assert limiter.delay() == 0.0


def test_the_circuit_opens_after_the_threshold_and_probes_after_the_open_period() -> None:
    clock = Clock()
    b = CircuitBreaker(threshold=3, open_s=2.0, max_open_s=5.0, clock=clock)
    assert b.permits() is None
    b.failure()
    b.failure()
    assert b.permits() is None  # two in a row: still closed
    b.failure()
    assert b.state is Circuit.OPEN and b.permits() == 0
    clock.now += 1.9
    assert b.permits() == 0 and 0 < b.seconds_until_probe() <= 0.1 + 1e-9
    clock.now += 0.1
    assert b.permits() == 1  # one probe
    b.failure()  # the probe failed: open for twice as long
    assert b.state is Circuit.OPEN and b.open_s == 4.0
    clock.now += 4.0
    assert b.permits() == 1
    b.failure()
    assert b.open_s == 5.0  # capped
    clock.now += 5.0
    assert b.permits() == 1
    b.success()
    assert b.state is Circuit.CLOSED and b.permits() is None and b.open_s == 2.0


def test_a_success_between_failures_resets_the_streak() -> None:
    b = CircuitBreaker(threshold=3, clock=Clock())
    for _ in range(10):
        b.failure()
        b.failure()
        b.success()
    assert b.state is Circuit.CLOSED


@given(st.lists(st.sampled_from(["fail", "ok", "tick"]), max_size=200))
def test_while_open_nothing_goes_out_and_the_open_period_stays_bounded(steps: list[str]) -> None:
    clock = Clock()
    b = CircuitBreaker(threshold=2, open_s=1.0, max_open_s=8.0, clock=clock)
    for step in steps:
        permits = b.permits()
        if step == "tick":
            clock.now += 0.7
        elif permits != 0:  # only what the breaker lets through has an outcome
            b.failure() if step == "fail" else b.success()
        assert 1.0 <= b.open_s <= 8.0
        if b.state is Circuit.OPEN:
            assert b.seconds_until_probe() <= b.open_s
