"""Structured logging: key-value events, console in development, JSON otherwise.

Event names are fixed strings such as `webhook.received`; everything variable is
a field. Bodies, headers, keys, secrets and addresses are never logged.
"""

import logging
import sys
from typing import TextIO

import structlog
from structlog.typing import Processor

from app.core.settings import LogFormat

# uvicorn's access log and httpx's request log print whole URLs, query strings
# included (filters, page tokens, pre-signed download links). The request
# middleware and the Trackstar client log their own lines without them.
QUIET_LOGGERS = ("uvicorn.access",)
WARNINGS_ONLY = ("httpx", "httpcore")
FORWARDED_LOGGERS = ("uvicorn", "uvicorn.error", "alembic")
HANDLER_NAME = "trackstar-fulfillment"


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
    ]
    renderer: Processor
    if log_format is LogFormat.JSON:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer()

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
