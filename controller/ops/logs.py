"""Logging for the controller: one logger per module, key=value context, secrets redacted.

Modules log with context as extras, which the formatter renders as key=value pairs:

    logger.info("flag changed", extra={"flag": name, "old": old, "new": new})
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from bridge.redaction import RedactingFilter

# Environment variables whose values are secrets wherever they show up.
SECRET_ENV_VARS = ("DATABASE_URL", "TEST_DATABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_ANON_KEY",
                   "SUPABASE_JWT_SECRET", "PGPASSWORD", "PGRST_JWT_SECRET", "EXECUTOR_JWT", "ALERT_WEBHOOK_URL",
                   "TELEGRAM_BOT_TOKEN", "AUTHENTICATOR_PASSWORD", "POSTGRES_PASSWORD", "CONFIG_PASSWORD", "QUEUE_URL")

_STANDARD = RedactingFilter._STANDARD


def _format_value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    """`time level logger message key=value ...`, the extras in the order they were given."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={_format_value(v)}" for k, v in vars(record).items() if k not in _STANDARD]
        if not extras:
            return line
        head, sep, tail = line.partition("\n")
        return f"{head} {' '.join(extras)}{sep}{tail}"


def configure(level: str = "INFO", stream: TextIO | None = None) -> RedactingFilter:
    """Send all logs to `stream` (stderr by default) as key=value lines with secrets masked."""
    redactor = RedactingFilter(os.environ.get(name, "") for name in SECRET_ENV_VARS)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_controller_handler", False):
            root.removeHandler(old)
    handler._controller_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return redactor
