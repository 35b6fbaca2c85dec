"""The signal queue as the Hummingbot script sees it: claim, ack, report, heartbeat.

Two transports behind one interface:
- `PostgrestQueue`: PostgREST RPC over HTTP with `requests` (Supabase, or the PostgREST service of the
  compose file). `POST /rpc/<function>`: claims must be POSTs, PostgREST runs GETs read-only.
- `PostgresQueue`: direct Postgres with psycopg 3 (embedded database and the demo), imported only when
  this transport is chosen, since the official Hummingbot image does not ship psycopg. It can also LISTEN
  for new signals (`listener()`, migration 0018), so a bot claims at once instead of at its next poll.

PostgREST cannot LISTEN; its client has `claim_wait()` instead, a long poll (migration 0026): the database
waits a bounded time for a claimable signal and claims it as soon as one commits.

Every call has a timeout. `ack`, `report` and `heartbeat` are idempotent in SQL and are retried with
backoff on retryable errors; `claim` is not idempotent (a lost reply would leave signals leased to
nobody until the lease runs out), so it is never retried: the next tick claims again.
Nothing here imports the controller: the compose file mounts this package beside the script.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

import requests

from bridge.resilience import CallError, ErrorKind, RetryPolicy, kind_of_status, parse_retry_after, retry_call
from bridge.schemas import AckStatus, OrderEvent, Signal, to_json_value

logger = logging.getLogger(__name__)

# ack_signal's SQLSTATE for "the signal is claimed by another consumer" (migration 0012); PostgREST answers it
# with HTTP 409. Distinct from 42501 (an expired or wrong key), which the executor must keep retrying.
CLAIM_TAKEN = "PT409"


class ClaimTaken(CallError):
    """The signal is claimed by another consumer (or by nobody): resending this ack can never succeed."""


# {"binance": ["BTC-USDT", "ETH-USDT"]} or {"binance": None} for every pair of the exchange.
Markets = Mapping[str, list[str] | None]


def markets_payload(markets: Markets | None) -> list[dict[str, Any]] | None:
    if markets is None:
        return None
    return [{"exchange": ex} if symbols is None else {"exchange": ex, "symbols": list(symbols)}
            for ex, symbols in markets.items()]


class SignalQueue(Protocol):
    """What the executor script needs from the queue."""

    def claim(self, consumer: str, max_count: int, lease_seconds: int,
              markets: Markets | None = None) -> list[Signal]: ...

    # Optional, where the transport has it (PostgrestQueue): `claim` that first waits up to `wait_s` in the
    # database for a claimable signal. Callable from a thread of its own while other calls run.
    #   def claim_wait(self, consumer, max_count, lease_seconds, markets, wait_s) -> list[Signal]

    def ack(self, signal_id: UUID, consumer: str, status: AckStatus, reason: str | None = None) -> str: ...

    def report(self, event: OrderEvent) -> dict[str, Any]: ...

    def report_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Report an event already in the RPC's form (`OrderEvent.to_payload()`): what the outbox stores, sent
        as it was written."""
        ...

    def heartbeat(self, component: str, progress: Mapping[str, Any]) -> None: ...

    def positions(self, consumer: str) -> list[dict[str, Any]]:
        """The signals `consumer` is executing, with their fills and open orders (restart safety)."""
        ...

    def close(self) -> None: ...


DEFAULT_RETRY = RetryPolicy(base_s=0.5, cap_s=10.0, tries=4)


class PostgrestQueue:
    """The queue over PostgREST RPC. `base_url` is PostgREST's root (Supabase: `<SUPABASE_URL>/rest/v1`)."""

    def __init__(self, base_url: str, api_key: str, *, token: str | None = None, timeout_s: float = 5.0,
                 retry: RetryPolicy = DEFAULT_RETRY, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry = retry
        self.session = session or requests.Session()
        headers = {
            "apikey": api_key,
            "Authorization": f"Bearer {token or api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.session.headers.update(headers)
        # claim_wait's own session: a long poll runs on its own thread while acks and reports go out on the
        # other (a requests.Session is not meant to be shared between threads)
        self.wait_session = requests.Session()
        self.wait_session.headers.update(headers)

    @classmethod
    def for_supabase(cls, supabase_url: str, api_key: str, **kwargs: Any) -> PostgrestQueue:
        return cls(supabase_url.rstrip("/") + "/rest/v1", api_key, **kwargs)

    def _rpc(self, function: str, params: dict[str, Any], *, session: requests.Session | None = None,
             timeout_s: float | None = None) -> Any:
        endpoint = f"rpc/{function}"
        try:
            response = (session or self.session).post(f"{self.base_url}/{endpoint}",
                                                      data=json.dumps(to_json_value(params)),
                                                      timeout=timeout_s or self.timeout_s)
        except requests.Timeout as exc:
            raise CallError(ErrorKind.TIMEOUT, str(exc), endpoint=endpoint) from None
        except requests.ConnectionError as exc:
            raise CallError(ErrorKind.CONNECTION, str(exc), endpoint=endpoint) from None
        kind = kind_of_status(response.status_code)
        if kind is not None:
            code = None
            try:
                body = response.json()
                message, code = body.get("message") or response.text, body.get("code")
            except (ValueError, AttributeError):
                message = response.text
            error = ClaimTaken if code == CLAIM_TAKEN else CallError
            raise error(kind, message[:500], endpoint=endpoint, status=response.status_code,
                        retry_after=parse_retry_after(response.headers.get("Retry-After")))
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json(parse_float=Decimal)
        except ValueError:
            raise CallError(ErrorKind.MALFORMED, f"not JSON: {response.text[:200]!r}", endpoint=endpoint,
                            status=response.status_code) from None

    def claim(self, consumer: str, max_count: int, lease_seconds: int,
              markets: Markets | None = None) -> list[Signal]:
        rows = self._rpc("claim_signals", {"consumer": consumer, "max_count": max_count,
                                           "lease_seconds": lease_seconds, "markets": markets_payload(markets)})
        return signals_of("claim_signals", rows)

    def claim_wait(self, consumer: str, max_count: int, lease_seconds: int, markets: Markets | None = None,
                   wait_s: float = 1.0) -> list[Signal]:
        """`claim`, after waiting up to `wait_s` in the database for a claimable signal (claim_signals_wait):
        returns as soon as one is claimed, or empty when none came. Never retried, like `claim`."""
        params = {"consumer": consumer, "max_count": max_count, "lease_seconds": lease_seconds,
                  "markets": markets_payload(markets), "wait_ms": round(wait_s * 1000)}
        # the reply comes after the wait: the timeout covers both
        rows = self._rpc("claim_signals_wait", params, session=self.wait_session, timeout_s=self.timeout_s + wait_s)
        return signals_of("claim_signals_wait", rows)

    def ack(self, signal_id: UUID, consumer: str, status: AckStatus, reason: str | None = None) -> str:
        params = {"signal_id": signal_id, "consumer": consumer, "status": status, "reason": reason}
        row = retry_call(lambda: self._rpc("ack_signal", params), self.retry)
        return row["status"]

    def report(self, event: OrderEvent) -> dict[str, Any]:
        return self.report_payload(event.to_payload())

    def report_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        params = {"event": dict(payload)}
        return retry_call(lambda: self._rpc("report_order_event", params), self.retry)

    def heartbeat(self, component: str, progress: Mapping[str, Any]) -> None:
        params = {"component": component, "progress": dict(progress)}
        retry_call(lambda: self._rpc("heartbeat", params), self.retry)

    def positions(self, consumer: str) -> list[dict[str, Any]]:
        return retry_call(lambda: self._rpc("executor_positions", {"consumer": consumer}), self.retry) or []

    def close(self) -> None:
        self.session.close()
        self.wait_session.close()


def signals_of(function: str, rows: Any) -> list[Signal]:
    if not isinstance(rows, list):
        raise CallError(ErrorKind.MALFORMED, f"{function} returned {type(rows).__name__}, not a list",
                        endpoint=f"rpc/{function}")
    return [Signal.model_validate(row) for row in rows]


class PostgresQueue:
    """The queue over a direct Postgres connection (psycopg 3, imported on first use).

    With `role` set (default `executor`), each call runs as that role, so even a superuser URL (the embedded
    database) gets only the executor's rights. Each call is one transaction that sets its role and statement
    timeout locally, and no statement is prepared: a transaction-mode pooler (pgbouncer, Supabase's port 6543),
    which hands the server connection to another client after every transaction and keeps no session state,
    carries it unchanged. LISTEN (`listener()`) needs a session: not through such a pooler.
    """

    def __init__(self, dsn: str, *, role: str | None = "executor", timeout_s: float = 5.0,
                 retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.dsn = dsn
        self.role = role
        self.timeout_s = timeout_s
        self.retry = retry
        self._conn: Any = None

    def _connection(self) -> Any:
        import psycopg  # only this transport needs it, and the Hummingbot image lacks it
        from psycopg.rows import dict_row

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row,
                                         connect_timeout=max(1, round(self.timeout_s)), prepare_threshold=None)
        return self._conn

    def _call(self, function: str, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        import psycopg

        try:
            conn = self._connection()
            with conn.transaction():  # the settings below end with it: nothing stays on a pooled server connection
                conn.execute("select set_config('statement_timeout', %s, true), set_config('role', %s, true)",
                             (str(int(self.timeout_s * 1000)), self.role or "none"))
                return conn.execute(query, params).fetchall()
        except psycopg.errors.QueryCanceled as exc:
            raise CallError(ErrorKind.TIMEOUT, str(exc), endpoint=function) from None
        except psycopg.OperationalError as exc:
            self._drop_connection()
            raise CallError(ErrorKind.CONNECTION, str(exc), endpoint=function) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise CallError(ErrorKind.AUTH, exc.diag.message_primary or str(exc), endpoint=function) from None
        except psycopg.Error as exc:
            error = ClaimTaken if exc.sqlstate == CLAIM_TAKEN else CallError
            raise error(ErrorKind.CLIENT, exc.diag.message_primary or str(exc), endpoint=function) from None

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def claim(self, consumer: str, max_count: int, lease_seconds: int,
              markets: Markets | None = None) -> list[Signal]:
        payload = markets_payload(markets)
        rows = self._call("claim_signals", "select * from claim_signals(%s, %s, %s, %s::jsonb)",
                          (consumer, max_count, lease_seconds, None if payload is None else json.dumps(payload)))
        return [Signal.model_validate(row) for row in rows]

    def ack(self, signal_id: UUID, consumer: str, status: AckStatus, reason: str | None = None) -> str:
        rows = retry_call(lambda: self._call("ack_signal", "select status from ack_signal(%s, %s, %s, %s)",
                                             (signal_id, consumer, status, reason)), self.retry)
        return rows[0]["status"]

    def report(self, event: OrderEvent) -> dict[str, Any]:
        return self.report_payload(event.to_payload())

    def report_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        body = json.dumps(dict(payload))
        rows = retry_call(lambda: self._call("report_order_event",
                                             "select report_order_event(%s::jsonb) as result", (body,)),
                          self.retry)
        return rows[0]["result"]

    def heartbeat(self, component: str, progress: Mapping[str, Any]) -> None:
        payload = json.dumps(to_json_value(dict(progress)))
        retry_call(lambda: self._call("heartbeat", "select heartbeat(%s, %s::jsonb)", (component, payload)),
                   self.retry)

    def positions(self, consumer: str) -> list[dict[str, Any]]:
        return retry_call(lambda: self._call("executor_positions", "select * from executor_positions(%s)",
                                             (consumer,)), self.retry)

    def listener(self) -> SignalListener:
        """A LISTEN connection of its own for new signals (the claim connection stays free for calls)."""
        return SignalListener(self.dsn, role=self.role, timeout_s=self.timeout_s)

    def close(self) -> None:
        self._drop_connection()


NEW_SIGNAL_CHANNEL = "signals_new"  # migration 0018: payload "<exchange>:<symbol>"


class SignalListener:
    """Waits for NOTIFY of a new signal on its own direct-Postgres connection.

    Owned by one thread: it connects, waits and closes on that thread (a psycopg connection blocked in
    `notifies()` must not be closed from elsewhere). A lost connection is reconnected on the next `wait`;
    a notification sent while it was down is missed, which the claim poll covers.
    """

    def __init__(self, dsn: str, *, role: str | None = "executor", timeout_s: float = 5.0) -> None:
        self.dsn = dsn
        self.role = role
        self.timeout_s = timeout_s
        self._conn: Any = None

    def connect(self) -> None:
        """Connect and LISTEN (idempotent); CallError(CONNECTION) when the database is unreachable."""
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return
        try:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=max(1, round(self.timeout_s)))
            if self.role:
                self._conn.execute(psycopg.sql.SQL("set role {}").format(psycopg.sql.Identifier(self.role)))
            self._conn.execute(psycopg.sql.SQL("listen {}").format(psycopg.sql.Identifier(NEW_SIGNAL_CHANNEL)))
        except psycopg.Error as exc:
            self.close()
            raise CallError(ErrorKind.CONNECTION, str(exc), endpoint="listen") from None

    def wait(self, timeout_s: float) -> list[str]:
        """The payloads of the notifications that arrive within `timeout_s` (empty: none came)."""
        import psycopg

        self.connect()
        try:
            # stop_after=1: return as soon as one arrives (with any that came in the same packet)
            payloads = [n.payload for n in self._conn.notifies(timeout=timeout_s, stop_after=1)]
        except psycopg.Error as exc:
            self.close()
            raise CallError(ErrorKind.CONNECTION, str(exc), endpoint="listen") from None
        return payloads

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def wakes_for(payload: str, markets: Markets) -> bool:
    """Whether a new-signal notification is for a market this bot claims from."""
    exchange, _, symbol = payload.partition(":")
    if exchange not in markets:
        return False
    symbols = markets[exchange]
    return symbols is None or symbol in symbols
