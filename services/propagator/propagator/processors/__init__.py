"""Processor adapters behind one small interface (``ProcessorAdapter``)."""

from __future__ import annotations

from propagator.config import ProcessorConfig
from propagator.processors.base import ProcessorAdapter, WebhookAdapter
from propagator.processors.email import EmailAdapter
from propagator.processors.logistics import LogisticsAdapter
from propagator.processors.payment import PaymentAdapter

ADAPTERS: dict[str, type[WebhookAdapter]] = {
    "email": EmailAdapter,
    "payment": PaymentAdapter,
    "logistics": LogisticsAdapter,
}


def adapter_for(config: ProcessorConfig) -> ProcessorAdapter:
    cls = ADAPTERS.get(config.kind or config.name, WebhookAdapter)
    return cls(config)


__all__ = ["ProcessorAdapter", "WebhookAdapter", "adapter_for"]
