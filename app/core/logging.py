"""Structured logging: key-value events, console in development, JSON otherwise.

Event names are fixed strings such as `webhook.received`; everything variable is
a field. Bodies, headers, keys, secrets and addresses are never logged.
"""

import enum
import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from app.core.settings import LogFormat

# uvicorn's access log and httpx's request log print whole URLs, query strings
# included (filters, page tokens, pre-signed download links). The request
# middleware and the Trackstar client log their own lines without them.
QUIET_LOGGERS = ("uvicorn.access",)
WARNINGS_ONLY = ("httpx", "httpcore")
FORWARDED_LOGGERS = ("uvicorn", "uvicorn.error", "alembic")
HANDLER_NAME = "trackstar-fulfillment"
# A field longer than this is cut: an error body (an HTML error page from a
# proxy, a cart's message quoting what it refused) must not flood the log.
MAX_FIELD_CHARS = 300
_FIELDS_KEPT_WHOLE = frozenset({"event", "exception", "timestamp", "logger", "level"})


def _tidy_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Every field on one readable line: long text cut, control characters
    escaped (a NUL from a request path would make the log binary), enums as
    their values."""
    for key, value in event_dict.items():
        if key not in _FIELDS_KEPT_WHOLE:
            event_dict[key] = _tidy(value)
    return event_dict


def _tidy(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if not isinstance(value, str):
        return value
    if len(value) > MAX_FIELD_CHARS:
        cut = len(value) - MAX_FIELD_CHARS
        value = f"{value[:MAX_FIELD_CHARS]}... ({cut} more characters)"
    if not value.isprintable():
        value = "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)
    return value


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to `sys.stderr` as it is when a line is logged, so redirection
    after start-up (a supervisor, a test's output capture) is honoured."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def configure_logging(level: str, log_format: LogFormat) -> None:
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _tidy_fields,
    ]
    renderer: Processor
    if log_format is LogFormat.JSON:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        # Colours only on a terminal: escape codes in a log file are noise.
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = _StderrHandler()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    # Replace only our own handler: others (pytest's capture) stay attached.
    root.handlers = [h for h in root.handlers if h.get_name() != HANDLER_NAME]
    root.addHandler(handler)
    root.setLevel(level)
    for name in FORWARDED_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).disabled = True
    for name in WARNINGS_ONLY:
        logging.getLogger(name).setLevel(logging.WARNING)
