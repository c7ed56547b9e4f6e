"""``serve`` logs the library's warnings (and worse) to stderr, one line each."""

from __future__ import annotations

import logging
import sys

from .._errors import ServerFailed

__all__ = ["LEVELS", "setup"]

#: ``--log-level`` choices.
LEVELS = ("debug", "info", "warning", "error")


class _OneLine(logging.Formatter):
    """``warning: <message>``, without the traceback (``--log-level debug`` shows it)."""

    def __init__(self, tracebacks: bool) -> None:
        super().__init__()
        self._tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if self._tracebacks and record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _not_the_failure(record: logging.LogRecord) -> bool:
    """``serve`` says itself why its server failed, in its last line."""
    args = record.args
    return not (isinstance(args, tuple) and args and isinstance(args[0], ServerFailed))


def setup(level: str) -> None:
    """Send the ``trioraft`` logger's records at ``level`` and above to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine(tracebacks=level == "debug"))
    handler.addFilter(_not_the_failure)
    logger = logging.getLogger("trioraft")
    logger.addHandler(handler)
    logger.setLevel(level.upper())
