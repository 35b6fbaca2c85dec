"""A stand-in for PostgREST in tests. It is NOT PostgREST: it serves only the requests this project makes.

PostgREST cannot be installed where the tests run, so the HTTP clients (supabase-py for the controller's
store, the `requests` client of the Hummingbot side) are tested against this small WSGI server, which
executes their requests on the real, migrated Postgres database the way PostgREST would:

- auth: `Authorization: Bearer <jwt>` (HS256), else the `apikey` header's JWT, else role `anon`; the
  `role` claim picks the role. Each request runs in one transaction as
  `BEGIN; SET LOCAL ROLE <role>; set_config('request.jwt.claims', ...); ...; COMMIT`, so grants,
  row-level security and SECURITY DEFINER behave as in production. An invalid JWT is a 401.
- `POST /rpc/<fn>` (JSON object of named arguments) and `GET /rpc/<fn>?arg=value` (read-only
  transaction, so a function that writes fails as it does behind PostgREST).
- `GET /<table or view>` with `select`, the filters eq, neq, gt, gte, lt, lte, in, is, `order`, `limit`,
  `offset` and the `Range` header, capped at `max_rows` rows like Supabase's db-max-rows.
- `POST /<table>` (insert, upsert with `Prefer: resolution=merge-duplicates|ignore-duplicates` and
  `on_conflict`), `PATCH /<table>?<filters>`, `Prefer: return=representation`, and
  `Accept: application/vnd.pgrst.object+json`.
- Postgres errors become PostgREST's JSON errors and HTTP statuses.

Paths are served both under `/rest/v1/` (Supabase) and at the root (plain PostgREST). Anything else
(other methods, embedding, `or`/`and`/`not`, other operators, other schemas) is refused with a 400 that
says the stand-in does not serve it. Every request is recorded in `requests_seen`, so tests can pin what
the clients send. The opt-in `supabase` test tier runs the same clients against a real Supabase or
PostgREST when SUPABASE_URL / PGRST_URL are set; that tier, not this module, is the proof of
compatibility.
"""

from __future__ import annotations

import json
import re
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import jwt
import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RECORDED_HEADERS = ("apikey", "authorization", "accept-profile", "content-profile", "prefer", "content-type",
                    "accept", "range")
RESERVED_PARAMS = {"select", "order", "limit", "offset", "on_conflict", "columns"}
COMPARISONS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
IS_VALUES = {"null": "null", "true": "true", "false": "false"}
OBJECT_MEDIA_TYPE = "application/vnd.pgrst.object+json"
# PostgREST's table from SQLSTATE to HTTP status (42501 depends on the role); anything else is 400.
STATUS_EXACT = {"23503": 409, "23505": 409, "25006": 405, "P0001": 400, "42883": 404, "42P01": 404,
                "42P17": 500, "53400": 500}
STATUS_CLASS = {"08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500, "38": 500,
                "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500, "57": 500, "58": 500,
                "F0": 500, "HV": 500, "P0": 500, "XX": 500}
PROCS = """
select p.proargnames[1:p.pronargs], array(select format_type(t, null) from unnest(p.proargtypes)
       with ordinality u(t, i) order by i), p.pronargdefaults, p.proretset, rt.typtype,
       p.prorettype = 'void'::regtype
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace join pg_type rt on rt.oid = p.prorettype
 where n.nspname = 'public' and p.proname = %s and p.prokind = 'f'
   and (p.proargmodes is null or p.proargmodes <@ array['i', 't']::"char"[])
"""
PRIMARY_KEY = """
select a.attname from pg_index i cross join unnest(i.indkey) with ordinality k(attnum, ord)
  join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
 where i.indrelid = to_regclass(format('public.%%I', %s)) and i.indisprimary order by k.ord
"""


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names, only RECORDED_HEADERS that were sent
    body: Any  # the parsed JSON body, or None


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, details: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.hint = status, code, message, details, hint


def not_served(what: str) -> HttpError:
    return HttpError(400, "STANDIN", f"the PostgREST stand-in does not serve {what}")


def make_jwt(secret: str, role: str, **claims: Any) -> str:
    """An HS256 JWT with the given role, as Supabase's anon / service-role keys are."""
    return jwt.encode({"role": role, **claims}, secret, algorithm="HS256")


def ident(name: str) -> str:
    if not NAME.fullmatch(name):
        raise not_served(f'"{name}": only plain names (no embedding, alias, cast or JSON path)')
    return name


def split_list(text: str) -> list[str]:
    """`a,"b,c",d` -> ['a', 'b,c', 'd'] (PostgREST's list syntax, double quotes and backslash escapes)."""
    items, current, quoted, escaped = [], "", False, False
    for char in text:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append(current)
            current = ""
        else:
            current += char
    return [*items, current] if items or current else []


def status_for(sqlstate: str, role: str) -> int:
    if sqlstate.startswith("PT") and sqlstate[2:].isdigit():  # PostgREST: SQLSTATE PTxyz answers HTTP xyz
        return int(sqlstate[2:])
    if sqlstate == "42501":
        return 401 if role == "anon" else 403
    return STATUS_EXACT.get(sqlstate) or STATUS_CLASS.get(sqlstate[:2], 400)


def _abort(conn: psycopg.Connection) -> None:
    try:
        conn.execute("rollback")
    except psycopg.Error:
        conn.close()  # the pool drops it


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Handler(WSGIRequestHandler):
    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        # the headers as sent (WSGI invents a Content-Type and folds names)
        environ["standin.headers"] = {name.lower(): value for name, value in self.headers.items()}
        return environ

    def log_message(self, *args: Any) -> None:
        pass


class PostgrestStandin:
    """Serves the PostgREST subset above on 127.0.0.1 from a background thread; the instance is the WSGI app."""

    def __init__(self, database_url: str, jwt_secret: str, max_rows: int = 1000) -> None:
        self.database_url, self.jwt_secret, self.max_rows = database_url, jwt_secret, max_rows
        self.requests_seen: list[RecordedRequest] = []
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> str:
        self._server = make_server("127.0.0.1", 0, self, server_class=_ThreadingServer, handler_class=_Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="postgrest-standin", daemon=True)
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        """PostgREST's root here; supabase-py is given this URL and appends /rest/v1 itself."""
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> PostgrestStandin:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        conn = conn or psycopg.connect(self.database_url, autocommit=True)
        try:
            yield conn
        finally:
            if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE or self._server is None:
                conn.close()
            else:
                with self._lock:
                    self._idle.append(conn)

    # --- WSGI ----------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        sent = environ.get("standin.headers", {})
        headers = {name: sent[name] for name in RECORDED_HEADERS if name in sent}
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        try:
            body, invalid = (json.loads(raw) if raw.strip() else None), False
        except ValueError:
            body, invalid = raw.decode(errors="replace"), True
        request = RecordedRequest(environ["REQUEST_METHOD"], environ["PATH_INFO"],
                                  parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True), headers, body)
        self.requests_seen.append(request)
        extra: list[tuple[str, str]] = []
        try:
            if invalid:
                raise HttpError(400, "PGRST102", "Empty or invalid json")
            status, payload, extra = self._handle(request)
        except HttpError as exc:
            status = exc.status
            payload = json.dumps({"code": exc.code, "message": exc.message, "details": exc.details,
                                  "hint": exc.hint})
            if status == 401:
                extra = [("WWW-Authenticate", "Bearer")]
        except Exception as exc:  # a bug of the stand-in: say so instead of a bare 500
            status, payload = 500, json.dumps({"code": "STANDIN", "message": f"stand-in error: {exc!r}",
                                               "details": None, "hint": None})
        out = payload.encode() if payload is not None else b""
        content_type = OBJECT_MEDIA_TYPE if status < 300 and OBJECT_MEDIA_TYPE in headers.get("accept", "") \
            else "application/json"
        response_headers = [("Content-Length", str(len(out))), *extra]
        if payload is not None:
            response_headers.append(("Content-Type", f"{content_type}; charset=utf-8"))
        start_response(f"{status} {HTTPStatus(status).phrase}", response_headers)
        return [out]

    def _handle(self, req: RecordedRequest) -> tuple[int, str | None, list[tuple[str, str]]]:
        path = req.path.removeprefix("/rest/v1")
        match = re.fullmatch(r"/(rpc/)?([^/]+)", path)
        if not match:
            raise not_served(f"the path {req.path}")
        rpc, name = bool(match.group(1)), ident(match.group(2))
        profile = req.headers.get("accept-profile" if req.method == "GET" else "content-profile", "public")
        if profile != "public":
            raise HttpError(406, "PGRST106", "The schema must be one of the following: public")
        role, claims = self._authenticate(req.headers)
        work = {(True, "GET"): self._rpc, (True, "POST"): self._rpc, (False, "GET"): self._select,
                (False, "POST"): self._insert, (False, "PATCH"): self._update}.get((rpc, req.method))
        if work is None:
            raise not_served(f"{req.method} {req.path}")
        with self._connection() as conn, conn.cursor() as cur:
            try:
                cur.execute("begin read only" if req.method == "GET" else "begin")
                cur.execute("select pg_has_role('authenticator', oid, 'MEMBER') from pg_roles where rolname = %s",
                            [role])
                if not (row := cur.fetchone()) or not row[0]:
                    raise HttpError(401 if role == "anon" else 403, "42501", f'permission denied to set role "{role}"')
                cur.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
                cur.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps(claims)])
                result = work(cur, name, req)
                cur.execute("commit")
                return result
            except psycopg.Error as exc:
                _abort(conn)
                diag = exc.diag
                sqlstate = diag.sqlstate or "XX000"
                raise HttpError(status_for(sqlstate, role), sqlstate, diag.message_primary or str(exc),
                                diag.message_detail, diag.message_hint) from None
            except BaseException:
                _abort(conn)
                raise

    def _authenticate(self, headers: dict[str, str]) -> tuple[str, dict[str, Any]]:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get("apikey")
        if not token:
            return "anon", {"role": "anon"}
        try:
            claims = jwt.decode(token, self.jwt_secret, algorithms=["HS256"], options={"verify_aud": False})
        except jwt.PyJWTError as exc:
            raise HttpError(401, "PGRST301", f"invalid JWT: {exc}") from None
        return str(claims.get("role") or "anon"), claims

    # --- RPC -----------------------------------------------------------------------------------------

    def _rpc(self, cur: psycopg.Cursor, name: str, req: RecordedRequest) -> tuple[int, str | None, list]:
        args = dict(req.query) if req.method == "GET" else req.body or {}
        if not isinstance(args, dict):
            raise not_served("an RPC body that is not a JSON object")
        cur.execute(PROCS, [name])
        # the first overload whose arguments are the given names plus some that have defaults
        proc = next((p for p in cur.fetchall() if set(args) <= set(p[0] or [])
                     and set((p[0] or [])[:len(p[0] or []) - p[2]]) <= set(args)), None)
        if proc is None:
            raise HttpError(404, "PGRST202", f"Could not find the function public.{name}({', '.join(sorted(args))})"
                                             " in the schema cache")
        names, types, _, returns_set, type_kind, returns_void = proc
        given = [(arg, typ) for arg, typ in zip(names or [], types, strict=True) if arg in args]
        call = sql.SQL("{}({})").format(sql.Identifier("public", name), sql.SQL(", ").join(
            sql.SQL("{} => {}").format(sql.Identifier(arg), sql.Identifier("_args", arg)) for arg, _ in given))
        source = sql.SQL("json_to_record(%s::json) as _args({})").format(sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(arg), sql.SQL(typ)) for arg, typ in given)) if given \
            else sql.SQL("(select 1) as _args")
        params = [json.dumps(args)] if given else []
        if returns_set:
            cur.execute(sql.SQL("select coalesce(json_agg(_r), '[]')::text, count(*) from {}"
                                " cross join lateral {} as _r").format(source, call), params)
            text, count = cur.fetchone()
            return 200, self._shape(text, count, req), []
        if returns_void:
            cur.execute(sql.SQL("select {} from {}").format(call, source), params)
            return 204, None, []
        row_json = "row_to_json(_r)" if type_kind == "c" else "to_json(_r)"
        cur.execute(sql.SQL("select " + row_json + "::text from {} cross join lateral {} as _r").format(source, call),
                    params)
        return 200, cur.fetchone()[0] or "null", []

    # --- tables and views ----------------------------------------------------------------------------

    def _where(self, req: RecordedRequest, params: list[Any]) -> sql.Composable:
        conditions = []
        for column, raw in req.query:
            if column in RESERVED_PARAMS:
                continue
            if column in ("or", "and"):
                raise not_served(f"the {column} parameter")
            target = sql.Identifier("_t", ident(column))
            op, _, value = raw.partition(".")
            if op in COMPARISONS:
                conditions.append(sql.SQL("{} " + COMPARISONS[op] + " %s").format(target))
                params.append(value)
            elif op == "in" and value.startswith("(") and value.endswith(")"):
                values = split_list(value[1:-1])
                conditions.append(sql.SQL("{} in ({})").format(target, sql.SQL(", ").join(
                    sql.Placeholder() for _ in values)) if values else sql.SQL("false"))
                params.extend(values)
            elif op == "is" and value in IS_VALUES:
                conditions.append(sql.SQL("{} is " + IS_VALUES[value]).format(target))
            else:
                raise not_served(f"the filter {column}={raw}")
        return sql.SQL(" where ") + sql.SQL(" and ").join(conditions) if conditions else sql.SQL("")

    def _select(self, cur: psycopg.Cursor, name: str, req: RecordedRequest) -> tuple[int, str | None, list]:
        query = dict(req.query)
        selected = query.get("select", "*")
        columns = sql.SQL("*") if selected == "*" else sql.SQL(", ").join(
            sql.Identifier(ident(column)) for column in split_list(selected))
        orders = []
        for item in (part for key, value in req.query if key == "order" for part in split_list(value)):
            column, *modifiers = item.split(".")
            words = {"asc": "asc", "desc": "desc", "nullsfirst": "nulls first", "nullslast": "nulls last"}
            if any(m not in words for m in modifiers):
                raise not_served(f"the order {item}")
            orders.append(sql.SQL(" ").join([sql.Identifier("_t", ident(column)),
                                             *(sql.SQL(words[m]) for m in modifiers)]))
        offset, limit = 0, self.max_rows
        if match := re.fullmatch(r"(\d+)-(\d*)", req.headers.get("range", "")):
            offset = int(match.group(1))
            if match.group(2):
                limit = min(limit, int(match.group(2)) - offset + 1)
        try:
            offset = int(query.get("offset", offset))
            limit = max(0, min(limit, int(query.get("limit", limit))))
        except ValueError:
            raise HttpError(400, "PGRST100", "limit and offset must be whole numbers") from None
        params: list[Any] = []
        where = self._where(req, params)
        order = sql.SQL(" order by ") + sql.SQL(", ").join(orders) if orders else sql.SQL("")
        cur.execute(sql.SQL("select coalesce(json_agg(_r), '[]')::text, count(*) from (select {} from {} as _t{}{}"
                            " limit %s offset %s) as _r").format(columns, sql.Identifier("public", name), where,
                                                                 order), [*params, limit, offset])
        text, count = cur.fetchone()
        content_range = f"{offset}-{offset + count - 1}/*" if count else "*/*"
        return 200, self._shape(text, count, req), [("Content-Range", content_range)]

    def _insert(self, cur: psycopg.Cursor, name: str, req: RecordedRequest) -> tuple[int, str | None, list]:
        rows = req.body if isinstance(req.body, list) else [req.body]
        if not all(isinstance(row, dict) for row in rows):
            raise HttpError(400, "PGRST102", "the body must be a JSON object or an array of objects")
        query = dict(req.query)
        keys = split_list(query["columns"]) if "columns" in query else list(dict.fromkeys(k for r in rows for k in r))
        columns = [ident(key) for key in keys]
        table = sql.Identifier("public", name)
        if not columns:
            raise not_served("an insert without columns")
        column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
        statement = sql.SQL("insert into {} as _t ({}) select {} from json_populate_recordset(null::{}, %s::json)"
                            ).format(table, column_list, column_list, table)
        prefer = self._prefer(req)
        if resolution := prefer.get("resolution"):
            if "on_conflict" in query:
                target = [ident(c) for c in split_list(query["on_conflict"])]
            else:
                cur.execute(PRIMARY_KEY, [name])
                target = [row[0] for row in cur.fetchall()]
            updates = [c for c in columns if c not in target]
            if resolution == "merge-duplicates" and updates:
                action = sql.SQL("do update set ") + sql.SQL(", ").join(
                    sql.SQL("{} = excluded.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in updates)
            elif resolution in ("merge-duplicates", "ignore-duplicates"):
                action = sql.SQL("do nothing")
            else:
                raise not_served(f"Prefer: resolution={resolution}")
            statement += sql.SQL(" on conflict ({}) ").format(sql.SQL(", ").join(map(sql.Identifier, target))) + action
        return self._write(cur, statement, [json.dumps(rows)], req)

    def _update(self, cur: psycopg.Cursor, name: str, req: RecordedRequest) -> tuple[int, str | None, list]:
        if not isinstance(req.body, dict) or not req.body:
            raise HttpError(400, "PGRST102", "PATCH needs a non-empty JSON object")
        params: list[Any] = [json.dumps(req.body)]
        if all(key in RESERVED_PARAMS for key, _ in req.query):
            raise not_served("a PATCH without filters")
        where = self._where(req, params)
        table = sql.Identifier("public", name)
        assignments = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(ident(c)), sql.Identifier("_src", c))
                                         for c in req.body)
        statement = sql.SQL("update {} as _t set {} from json_populate_record(null::{}, %s::json) as _src{}").format(
            table, assignments, table, where)
        return self._write(cur, statement, params, req)

    def _write(self, cur: psycopg.Cursor, statement: sql.Composable, params: list[Any],
               req: RecordedRequest) -> tuple[int, str | None, list]:
        if self._prefer(req).get("return") == "representation":
            cur.execute(sql.SQL("with _w as ({} returning _t.*) select coalesce(json_agg(_w), '[]')::text, count(*)"
                                " from _w").format(statement), params)
            text, count = cur.fetchone()
            return (201 if req.method == "POST" else 200), self._shape(text, count, req), []
        cur.execute(statement, params)
        return (201 if req.method == "POST" else 204), None, []

    @staticmethod
    def _prefer(req: RecordedRequest) -> dict[str, str]:
        items = (item.strip().partition("=") for item in req.headers.get("prefer", "").split(","))
        return {key: value for key, _, value in items if key}

    @staticmethod
    def _shape(array_text: str, count: int, req: RecordedRequest) -> str:
        """A JSON array, or its one element when the client asked for a single object."""
        if OBJECT_MEDIA_TYPE not in req.headers.get("accept", ""):
            return array_text
        if count != 1:
            raise HttpError(406, "PGRST116", "JSON object requested, multiple (or no) rows returned",
                            f"The result contains {count} rows")
        return array_text[1:-1]

