"""The container image, checked offline: the Dockerfile (hadolint: a real binary from a dev
dependency, shown to reject a broken file) and .dockerignore."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

from tests.deploy_support import (
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    assert_consentctl_accepts,
    run,
    tool,
)

# --- Dockerfile -------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in dockerfile_instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_dockerfile_passes_hadolint() -> None:
    proc = run(tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    proc = run(tool("hadolint"), "--no-color", str(bad))
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # "latest" tag


def test_dockerfile_is_multi_stage_slim_non_root_without_build_tools() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "multi-stage build expected"
    runs = [args for stage in all_stages for kw, args in stage if kw == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs, "the environment is built with `uv sync`"
    assert all("--frozen" in r and "--no-dev" in r for r in syncs), syncs

    final = all_stages[-1]
    base = final[0][1].split()[0]
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base), base
    final_text = "\n".join(f"{kw} {args}" for kw, args in final)
    for forbidden in ("uv sync", "/uv", "apt-get", "gcc", "build-essential", "pip install"):
        assert forbidden not in final_text, f"{forbidden!r} in the final stage"
    copies_from = [args for kw, args in final if kw == "COPY" and "--from=" in args]
    assert copies_from and all("--from=build" in c for c in copies_from), copies_from

    users = [args for kw, args in final if kw == "USER"]
    assert users, "the final stage must switch to an unprivileged user"
    user = users[-1].split(":")[0]
    assert user not in {"0", "root"}, users[-1]

    entrypoint = [json.loads(args) for kw, args in final if kw == "ENTRYPOINT"]
    assert entrypoint == [["consentctl"]]
    cmd = [json.loads(args) for kw, args in final if kw == "CMD"]
    assert len(cmd) == 1
    assert_consentctl_accepts(cmd[0])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["consentctl"] == "consentctl.main:app"


def docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression (``**``, ``*`` and ``?``)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path (or one of its parents) wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = docker_pattern(pattern.removeprefix("!").rstrip("/"))
        if any(regex.match(c) for c in candidates):
            ignored = not negated
    return ignored


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for kw, args in dockerfile_instructions():
        if kw == "COPY" and "--from=" not in args:
            sources += shlex.split(args)[:-1]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not dockerignored(src.rstrip("/"), patterns), f"{src} is excluded"
    for needed in (
        "services/consent/consentctl/main.py",
        "services/propagator/propagator/demo.py",
    ):
        assert not dockerignored(needed, patterns), needed
    for excluded in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/test_deploy_docker.py",
        ".consent/dev",
    ):
        assert dockerignored(excluded, patterns), excluded
    assert dockerignored("services/consent/consent/__pycache__/x.pyc", patterns)
