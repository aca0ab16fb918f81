"""Consent service: records per-purpose choices, proves them, publishes every change."""
