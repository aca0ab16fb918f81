"""Propagator metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter("consent_deliveries_total", "Delivery outcomes", ["processor", "status"])
DEAD_LETTERS = Counter(
    "consent_dead_letters_total", "Deliveries sent to the dead-letter topic", ["processor"]
)
E2E_LATENCY = Histogram(
    "consent_delivery_e2e_seconds",
    "Event time to processor 2xx",
    ["processor"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
INTAKE_PARKED = Counter(
    "consent_intake_parked_total",
    "Records intake could not use, parked with their offset committed",
    ["reason"],
)
INTAKE_SKIPPED = Counter(
    "consent_intake_skipped_total",
    "Records intake skipped: unknown event types, warm-up traffic, types for no processor",
    ["reason"],
)
CIRCUIT_OPEN = Gauge(
    "consent_processor_circuit_open",
    "1 while this replica's circuit breaker holds deliveries to the processor back",
    ["processor"],
)
