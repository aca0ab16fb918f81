"""docs/operations.md covers every setting and secret the deployment files use."""

from __future__ import annotations

from tests.deploy_support import (
    ALL_ENV,
    EXTERNAL_SECRETS,
    OPERATIONS,
)

# --- docs -------------------------------------------------------------------------------


def test_operations_doc_covers_every_setting_and_secret() -> None:
    text = OPERATIONS.read_text()
    missing = sorted(key for key in ALL_ENV if f"`{key}`" not in text)
    assert not missing, f"docs/operations.md does not describe {missing}"
    for secret in EXTERNAL_SECRETS:
        assert f"`{secret}`" in text, secret
    headings = [line.lower() for line in text.splitlines() if line.startswith("#")]
    for topic in ("settings", "sizing", "upgrade", "backup", "sasl"):
        assert any(topic in h for h in headings), f"no section about {topic}"
