"""structlog set-up: human-readable on a TTY, one JSON object per line with --log-format json.

Event names are fixed snake_case (`bpffs_mkdir_failed`); values go in bound keys.

Every line goes through the same renderer, a library's too: the stdlib `logging` root is routed
through structlog's ProcessorFormatter, so a third-party line (e.g. an inotify library's "queue
overflowed" warning) is a JSON object with --log-format json, not plain text in the JSON stream.
Names are data here as in the CLI's output (printable.py): console values are escaped (a cgroup
named "\\x1b[2J" does not clear the terminal); JSON values that hold non-UTF-8 bytes are escaped
text plus `<key>_b64` with the exact bytes, so every line is valid UTF-8 JSON.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

from bpffs_sync import printable

LogFormat = Literal["auto", "console", "json"]


def _json_values(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    safe: MutableMapping[str, Any] = printable.json_safe(dict(event))
    return safe


def _console_values(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {k: printable.escape(v) if isinstance(v, str) and not k.startswith("_") else v for k, v in event.items()}


def setup(fmt: LogFormat = "auto", level: str = "info") -> None:
    """Configure structlog, and the stdlib logging root, to write to stderr."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.types.Processor
    names: structlog.types.Processor
    if fmt == "json":
        renderer, names = structlog.processors.JSONRenderer(), _json_values
    else:
        renderer, names = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()), _console_values
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            names,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, stamp],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, names,
                    structlog.processors.format_exc_info, renderer],
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric)


def get(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
