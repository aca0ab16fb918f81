"""Which client is this: X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

from typing import Any

import pytest

from consent.api.client_address import client_ip, networks

TRUSTED = networks(("10.0.0.0/8", "2001:db8::/32"))


def scope(peer: str | None, *xff: str) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 4711) if peer else None,
        "headers": [(b"x-forwarded-for", v.encode()) for v in xff] + [(b"host", b"api")],
    }


@pytest.mark.parametrize(
    "peer, xff, trusted, want",
    [
        ("203.0.113.9", ["1.2.3.4"], TRUSTED, "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.5", ["1.2.3.4"], (), "10.0.0.5"),  # no trusted proxies configured
        ("10.0.0.5", ["1.2.3.4"], TRUSTED, "1.2.3.4"),
        ("10.0.0.5", ["6.6.6.6, 1.2.3.4, 10.1.1.1"], TRUSTED, "1.2.3.4"),  # spoofed left part
        ("10.0.0.5", ["6.6.6.6", "1.2.3.4"], TRUSTED, "1.2.3.4"),  # several headers
        ("10.0.0.5", ["10.9.9.9, 10.1.1.1"], TRUSTED, "10.9.9.9"),  # all trusted: leftmost
        ("10.0.0.5", [], TRUSTED, "10.0.0.5"),
        ("10.0.0.5", ["garbage, 10.2.2.2"], TRUSTED, "10.2.2.2"),  # malformed: stop there
        ("10.0.0.5", ["1.2.3.4:5555"], TRUSTED, "1.2.3.4"),
        ("2001:db8::1", ["[2001:db9::7]:443"], TRUSTED, "2001:db9::7"),
        ("::ffff:10.0.0.5", ["1.2.3.4"], TRUSTED, "1.2.3.4"),  # v4-mapped peer
        (None, ["1.2.3.4"], TRUSTED, None),
    ],
)
def test_client_ip(peer, xff, trusted, want):
    assert client_ip(scope(peer, *xff), trusted) == want
