"""E-mail service provider: marketing opt-outs become suppression-list operations."""

from __future__ import annotations

from typing import Any

from propagator.processors.base import WebhookAdapter


class EmailAdapter(WebhookAdapter):
    def body(self, event_id: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        out = super().body(event_id, event_type, data)
        decisions = out.get("decisions")
        if decisions is not None:
            out["suppression"] = {
                "add": sorted(p for p, allowed in decisions.items() if not allowed),
                "remove": sorted(p for p, allowed in decisions.items() if allowed),
            }
        return out
