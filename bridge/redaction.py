"""Keep secrets out of logs: DSN passwords, bearer tokens, API keys, Telegram bot tokens and JWTs.

Standard library only, so the Hummingbot side can use it too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from urllib.parse import unquote, urlsplit

MASK = "***"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host  ->  scheme://user:***@host
    (re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)[^@\s/]+(?=@)"), rf"\g<pre>{MASK}"),
    # libpq key=value DSNs and query strings: password=..., sslpassword=...
    (re.compile(r"(?P<pre>\b(?:ssl)?password\s*=\s*)(?:'[^']*'|\"[^\"]*\"|[^\s&;,]+)", re.I), rf"\g<pre>{MASK}"),
    # Authorization: Bearer <token>
    (re.compile(r"(?P<pre>\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.I), rf"\g<pre>{MASK}"),
    # api_key=..., apikey: ..., "secret": "...", token=..., service_role_key=...
    (
        re.compile(
            r"(?P<pre>\b[\w-]*(?:api[_-]?key|apikey|secret|token|service[_-]?role[_-]?key|password)[\"']?\s*[:=]\s*[\"']?)"
            r"(?!\*\*\*)[^\s\"',;&}]+",
            re.I,
        ),
        rf"\g<pre>{MASK}",
    ),
    # Telegram bot tokens (<bot id>:<35 characters>), which the Bot API puts in the URL path: /bot<token>/sendMessage
    (re.compile(r"(?P<pre>/bot)\d+:[A-Za-z0-9_-]+"), rf"\g<pre>{MASK}"),
    (re.compile(r"\b\d{6,}:[A-Za-z0-9_-]{30,}"), MASK),
    # bare JWTs (Supabase keys are JWTs): header.payload.signature, base64url
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MASK),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return `text` with every known secret value and every secret-looking token masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def secret_parts(secret: str) -> Iterator[str]:
    """The value itself and, for a URL, its password (which may be logged on its own)."""
    if not secret:
        return
    yield secret
    try:
        password = urlsplit(secret).password
    except ValueError:
        return
    if password:
        yield password
        yield unquote(password)


class RedactingFilter(logging.Filter):
    """Rewrite each record so that neither its message, its extras nor its traceback hold a secret.

    Attach it to handlers (a logger's own filters do not see records propagated from child loggers).
    """

    # LogRecord attributes that are not user extras.
    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(part for s in secrets for part in secret_parts(s))

    def add_secret(self, secret: str) -> None:
        """Mask this exact value (and a URL's password) wherever it appears from now on."""
        self._secrets = (*self._secrets, *secret_parts(secret))

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self._secrets)
        record.args = None
        for key, value in list(vars(record).items()):
            if key in self._STANDARD or value is None or isinstance(value, bool | int | float):
                continue
            if isinstance(value, str):
                setattr(record, key, redact(value, self._secrets))
                continue
            # An exception, a dict, a URL object...: formatters print str(value), so that is what must be clean.
            # Left as it is (type and all) when its text holds nothing to mask.
            text = str(value)
            masked = redact(text, self._secrets)
            if masked != text:
                setattr(record, key, masked)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        return True
