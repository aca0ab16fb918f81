"""The channel a write records when the request names none: one rule (domain/authority.py)."""

from __future__ import annotations

from consent.domain.authority import KEY_CHANNELS, USER_CHANNELS, choose_channel, default_channel


def test_defaults_by_credential():
    assert default_channel("user") == "web"
    assert default_channel("user", admin=True) == "web"  # a token is never the operator
    assert default_channel("key") == "api"
    assert default_channel("key", admin=True) == "operator"


def test_choose_channel_uses_the_default_and_each_credential_may_record_its_own():
    assert choose_channel("user", None, acting_guardian=False).channel == default_channel("user")
    assert choose_channel("key", None, acting_guardian=False).channel == default_channel("key")
    assert default_channel("user") in USER_CHANNELS and default_channel("key") in KEY_CHANNELS
    guardian = choose_channel("user", None, acting_guardian=True)
    assert (guardian.channel, guardian.device) == ("guardian", default_channel("user"))
