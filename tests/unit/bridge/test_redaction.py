"""Secrets never reach the log output, whichever way they are logged."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bridge.redaction import redact
from controller.ops import logs

PASSWORD = "s3cr3t-Pa55"
DSN = f"postgresql://trader:{PASSWORD}@db.example.internal:5432/trading"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture
def output(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    stream = io.StringIO()
    logs.configure("DEBUG", stream)
    yield stream
    logging.getLogger().handlers = [h for h in logging.getLogger().handlers
                                    if not getattr(h, "_controller_handler", False)]


def test_a_dsn_password_never_reaches_the_output(output: io.StringIO) -> None:
    log = logging.getLogger("controller.test")
    log.info("connecting to %s", DSN)
    log.info("connecting", extra={"dsn": DSN})
    log.warning(f"inline {DSN}")
    try:
        raise ConnectionError(f"could not connect to {DSN}")
    except ConnectionError:
        log.exception("connection failed")

    text = output.getvalue()
    assert PASSWORD not in text
    assert text.count("postgresql://trader:***@db.example.internal:5432/trading") == 4
    assert "ConnectionError" in text  # the traceback is kept, only the secret is masked


def test_the_environment_database_url_is_masked_even_in_odd_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", DSN)
    stream = io.StringIO()
    logs.configure("INFO", stream)
    try:
        logging.getLogger("controller.test").info("password is %r", PASSWORD)
    finally:
        logging.getLogger().handlers = [h for h in logging.getLogger().handlers
                                        if not getattr(h, "_controller_handler", False)]
    assert PASSWORD not in stream.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-123", "Authorization: Bearer ***"),
        ("host=db port=5432 password=hunter2 user=x", "host=db port=5432 password=*** user=x"),
        ("apikey: sb_secret_abcdef123456", "apikey: ***"),
        ('{"api_key": "k-123456789"}', '{"api_key": "***"}'),
        (f"key {JWT} used", "key *** used"),
        ("SUPABASE_SERVICE_ROLE_KEY=xyz123456", "SUPABASE_SERVICE_ROLE_KEY=***"),
        ("https://api.example.com/v1/klines?symbol=BTCUSDT", "https://api.example.com/v1/klines?symbol=BTCUSDT"),
    ],
)
def test_secret_looking_tokens_are_masked_and_the_rest_kept(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_context_is_rendered_as_key_value_pairs(output: io.StringIO) -> None:
    logging.getLogger("controller.data.flags").info("flag changed", extra={"flag": "ml.enabled", "old": "false",
                                                                      "new": "true", "by": "cli:me"})
    line = output.getvalue().strip()
    assert line.endswith("INFO controller.data.flags flag changed flag=ml.enabled old=false new=true by=cli:me")


class _Endpoint:
    """A non-string extra whose text holds a secret (say, a URL or client object with a __str__)."""

    def __str__(self) -> str:
        return f"endpoint {DSN}"


@pytest.mark.parametrize("value", [
    ConnectionError(f"could not connect to {DSN}"),
    {"dsn": DSN, "attempt": 2},
    [DSN],
    _Endpoint(),
    {"headers": {"Authorization": f"Bearer {JWT}"}},
], ids=["exception", "dict", "list", "object", "nested-dict"])
def test_a_non_string_extra_holding_a_secret_is_masked(output: io.StringIO, value: object) -> None:
    logging.getLogger("controller.test").error("call failed", extra={"error": value, "attempt": 3})
    text = output.getvalue()
    assert PASSWORD not in text and JWT not in text
    assert "***" in text and "attempt=3" in text


def test_a_non_string_extra_without_a_secret_keeps_its_value(output: io.StringIO) -> None:
    logging.getLogger("controller.test").info("counts", extra={"counts": {"claimed": 3}, "ok": True, "n": 2.5})
    assert output.getvalue().strip().endswith("counts=\"{'claimed': 3}\" ok=True n=2.5")
