"""Payment partner: receives sale/share/sharing decisions as a single data-sharing flag too."""

from __future__ import annotations

from typing import Any

from propagator.processors.base import WebhookAdapter


class PaymentAdapter(WebhookAdapter):
    def body(self, event_id: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        out = super().body(event_id, event_type, data)
        decisions = out.get("decisions")
        if decisions:
            out["share_with_partners"] = all(decisions.values())
        return out
