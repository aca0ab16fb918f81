"""Rows into dataclasses: a record never leaves a repository."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def build(cls: type[T], row: Mapping[str, Any]) -> T:
    """``cls`` (a dataclass) from the columns named like its fields; others are ignored."""
    return cls(**{f.name: row[f.name] for f in fields(cls)})  # type: ignore[arg-type]
