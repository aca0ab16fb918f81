"""Logistics partner: third-party sharing beyond what delivery itself needs."""

from __future__ import annotations

from propagator.processors.base import WebhookAdapter


class LogisticsAdapter(WebhookAdapter):
    """The generic body is what logistics expects; the class names the integration point."""
