"""Decode GPP strings with the IAB Tech Lab's library (``@iabgpp/cmpapi``, run with Node.js)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def ensure_node_modules() -> None:
    """``npm ci`` (pinned by package-lock.json) the first time; CI has registry access."""
    if (HERE / "node_modules" / "@iabgpp" / "cmpapi").is_dir() and (
        HERE / "node_modules" / "axe-core"
    ).is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm is needed for the GPP and accessibility tests (.ci/run installs it)"
        )
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=HERE,
        check=True,
        timeout=300,
    )


def iab_decode(strings: list[str]) -> list[dict[str, Any]]:
    ensure_node_modules()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is needed for the GPP tests (.ci/run installs it)")
    out = subprocess.run(
        [node, str(HERE / "decode.mjs")],
        input=json.dumps(strings).encode(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def axe_source() -> str:
    ensure_node_modules()
    return (HERE / "node_modules" / "axe-core" / "axe.min.js").read_text()
