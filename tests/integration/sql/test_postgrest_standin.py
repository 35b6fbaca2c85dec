"""The PostgREST stand-in (tests/support/postgrest_standin.py) behaves like PostgREST for what we use of it.

Against a migrated database: roles from the JWT, RPC by POST and read-only GET, table reads with filters,
order, paging and the max-rows cap, inserts and upserts, PostgREST's errors and statuses, and supabase-py
driving it. The real thing is checked by the opt-in tier (tests/integration/sql/test_real_postgrest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
import requests
from supabase import ClientOptions, create_client

from tests.support.postgrest_standin import PostgrestStandin, RecordedRequest, make_jwt

SECRET = "standin-test-secret-at-least-32-bytes-long"


@pytest.fixture
def standin(migrated_db: str) -> Iterator[PostgrestStandin]:
    with PostgrestStandin(migrated_db, SECRET) as server:
        yield server


def call(standin: PostgrestStandin, method: str, path: str, role: str | None = "service_role", *,
         prefix: str = "/rest/v1", headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
    sent = {"Authorization": f"Bearer {make_jwt(SECRET, role)}"} if role else {}
    return requests.request(method, f"{standin.base_url}{prefix}{path}", headers={**sent, **(headers or {})},
                            timeout=10, **kwargs)


def signal(**overrides: Any) -> dict[str, Any]:
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return {"strategy": "breakout", "exchange": "binance", "symbol": "BTC-USDT", "side": "buy", "price": 100.5,
            "quote_amount": 20, "take_profit_pct": 1.5, "confidence": 0.8, "expires_at": expires, **overrides}


def emit(standin: PostgrestStandin, **overrides: Any) -> requests.Response:
    return call(standin, "POST", "/rpc/emit_signal", json={"signal": signal(**overrides)})


def scan(i: int, **overrides: Any) -> dict[str, Any]:
    ts = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=i)
    return {"candle_ts": ts.isoformat(), "strategy": "breakout", "exchange": "binance", "symbol": "BTC-USDT",
            "timeframe": "1m", "decision": "skip", "reason": f"scan {i}", **overrides}


def test_the_role_comes_from_the_jwt(standin: PostgrestStandin) -> None:
    anon = call(standin, "GET", "/signals", role=None)
    assert (anon.status_code, anon.json()["code"]) == (401, "42501")
    assert call(standin, "GET", "/signals", role="authenticated").status_code == 403
    assert call(standin, "GET", "/signals", role="executor").status_code == 403
    service = call(standin, "GET", "/signals")
    assert (service.status_code, service.json()) == (200, [])
    assert call(standin, "GET", "/dashboard_signal_funnel", role="authenticated").json() == []


def test_each_request_runs_as_its_role_with_its_claims(standin: PostgrestStandin, migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        conn.execute("create function public.whoami() returns jsonb language sql stable as $$"
                     " select jsonb_build_object('user', current_user, 'role', auth.role(), 'sub', auth.jwt()->>'sub')"
                     " $$; grant execute on function public.whoami() to anon, authenticated")
    sub = "7c0b1d3e-0000-4000-8000-000000000001"
    token = make_jwt(SECRET, "authenticated", sub=sub)
    me = call(standin, "GET", "/rpc/whoami", role=None, headers={"Authorization": f"Bearer {token}"}).json()
    assert me == {"user": "authenticated", "role": "authenticated", "sub": sub}
    assert call(standin, "POST", "/rpc/whoami", role=None).json() == {"user": "anon", "role": "anon", "sub": None}


def test_the_apikey_header_is_the_fallback_and_a_bad_jwt_is_401(standin: PostgrestStandin) -> None:
    assert call(standin, "GET", "/signals", role=None, headers={"apikey": make_jwt(SECRET, "service_role")}).ok
    forged = make_jwt("another-secret-that-is-also-32-bytes-long", "service_role")
    response = call(standin, "GET", "/signals", role=None, headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401 and response.json()["code"] == "PGRST301"
    assert call(standin, "GET", "/signals", role="postgres").status_code == 403  # authenticator cannot become it


def test_emit_signal_returns_the_uuid_and_refusals_keep_postgres_codes(standin: PostgrestStandin) -> None:
    first = emit(standin)
    assert first.status_code == 200
    signal_id = UUID(first.json())

    duplicate = emit(standin)
    assert (duplicate.status_code, duplicate.json()["code"]) == (409, "23505")
    assert str(signal_id) in duplicate.json()["message"]

    bad = call(standin, "POST", "/rpc/emit_signal", json={"signal": {k: v for k, v in signal().items()
                                                                     if k != "price"}})
    assert bad.status_code == 400
    assert bad.json() == {"code": "22023", "message": 'emit_signal: missing key "price"', "details": None,
                          "hint": None}
    missing = call(standin, "POST", "/rpc/no_such_function", json={})
    assert (missing.status_code, missing.json()["code"]) == (404, "PGRST202")


def test_the_executor_claims_by_post_but_a_get_is_read_only(standin: PostgrestStandin) -> None:
    signal_id = emit(standin).json()
    args = {"consumer": "hb-1", "max_count": 5, "lease_seconds": 30}

    by_get = call(standin, "GET", "/rpc/claim_signals", role="executor", params=args)
    assert (by_get.status_code, by_get.json()["code"]) == (405, "25006")

    claimed = call(standin, "POST", "/rpc/claim_signals", role="executor", json=args)
    assert claimed.status_code == 200
    assert [(row["id"], row["status"], row["claimed_by"]) for row in claimed.json()] == [
        (signal_id, "claimed", "hb-1")]
    acked = call(standin, "POST", "/rpc/ack_signal", role="executor",
                 json={"signal_id": signal_id, "consumer": "hb-1", "status": "executing"})
    assert acked.json()["status"] == "executing"  # a function returning one row gives an object
    heartbeat = call(standin, "POST", "/rpc/heartbeat", role="executor", json={"component": "hb-1"})
    assert (heartbeat.status_code, heartbeat.content) == (204, b"")
    assert call(standin, "POST", "/rpc/emit_signal", role="executor", json={"signal": signal()}).status_code == 403


def test_concurrent_claims_hand_each_signal_out_once(standin: PostgrestStandin) -> None:
    ids = {emit(standin, symbol=f"C{i}-USDT").json() for i in range(8)}

    def claim(consumer: str) -> list[str]:
        response = call(standin, "POST", "/rpc/claim_signals", role="executor",
                        json={"consumer": consumer, "max_count": 2, "lease_seconds": 30})
        return [row["id"] for row in response.json()]

    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(claim, ["a", "b", "c", "d"]))
    claimed = [signal_id for batch in batches for signal_id in batch]
    assert sorted(claimed) == sorted(ids)


def test_max_rows_caps_every_read_and_offset_pages_reach_all(standin: PostgrestStandin) -> None:
    inserted = call(standin, "POST", "/scans", json=[scan(i) for i in range(1500)])
    assert (inserted.status_code, inserted.content) == (201, b"")

    capped = call(standin, "GET", "/scans", params={"select": "id", "order": "id", "limit": "2000"})
    assert len(capped.json()) == 1000 and capped.headers["Content-Range"] == "0-999/*"
    by_range = call(standin, "GET", "/scans", params={"select": "id"}, headers={"Range": "0-1999"})
    assert len(by_range.json()) == 1000

    ids: list[int] = []
    for offset in (0, 1000, 2000):
        page = call(standin, "GET", "/scans", params={"select": "id", "order": "id", "offset": str(offset)})
        ids += [row["id"] for row in page.json()]
    assert len(ids) == len(set(ids)) == 1500
    assert page.headers["Content-Range"] == "*/*"


def test_filters_select_and_order(standin: PostgrestStandin) -> None:
    rows = [scan(0, symbol="ETH-USDT", decision="enter"), scan(1, decision="enter"), scan(2, reason='a "quoted", one'),
            scan(3, decision="error", symbol="SOL-USDT")]
    assert call(standin, "POST", "/scans", json=rows).status_code == 201

    def get(**params: str) -> list[dict[str, Any]]:
        response = call(standin, "GET", "/scans", params={"select": "symbol,decision", **params})
        assert response.status_code == 200, response.text
        return response.json()

    assert get(decision="eq.enter", order="symbol.desc") == [
        {"symbol": "ETH-USDT", "decision": "enter"}, {"symbol": "BTC-USDT", "decision": "enter"}]
    assert [r["symbol"] for r in get(decision="in.(error,skip)", order="candle_ts.desc")] == ["SOL-USDT", "BTC-USDT"]
    assert len(get(symbol="neq.BTC-USDT")) == 2
    assert len(get(candle_ts="gte.2024-01-01T00:01:00+00:00")) == 3
    assert len(get(candle_ts="lt.2024-01-01T00:01:00Z", signal_id="is.null")) == 1
    assert len(get(reason='in.("a \\"quoted\\", one",scan 0)')) == 2
    assert get(decision="gt.enter", order="decision.asc.nullslast,symbol", limit="1") == [
        {"symbol": "SOL-USDT", "decision": "error"}]


def test_upsert_merges_or_ignores_on_the_conflict_columns(standin: PostgrestStandin) -> None:
    def post(progress: dict[str, Any], prefer: str) -> requests.Response:
        return call(standin, "POST", "/heartbeats", params={"on_conflict": "component"},
                    headers={"Prefer": prefer}, json={"component": "controller", "progress": progress})

    assert post({"n": 1}, "return=representation").json()[0]["progress"] == {"n": 1}
    assert post({"n": 2}, "return=minimal").status_code == 409
    merged = post({"n": 2}, "return=representation,resolution=merge-duplicates")
    assert merged.status_code == 201 and merged.json()[0]["progress"] == {"n": 2}
    ignored = post({"n": 3}, "return=representation,resolution=ignore-duplicates")
    assert ignored.json() == []
    rows = call(standin, "GET", "/heartbeats", params={"select": "component,progress"}).json()
    assert rows == [{"component": "controller", "progress": {"n": 2}}]


def test_patch_updates_the_filtered_rows_only(standin: PostgrestStandin) -> None:
    call(standin, "POST", "/heartbeats", json=[{"component": "a"}, {"component": "b"}])
    patched = call(standin, "PATCH", "/heartbeats", params={"component": "eq.a"},
                   headers={"Prefer": "return=representation"}, json={"progress": {"step": 7}})
    assert [(r["component"], r["progress"]) for r in patched.json()] == [("a", {"step": 7})]
    assert call(standin, "PATCH", "/heartbeats", json={"progress": {}}).status_code == 400
    single = call(standin, "GET", "/heartbeats", params={"component": "eq.b"},
                  headers={"Accept": "application/vnd.pgrst.object+json"})
    assert single.json()["progress"] == {}
    many = call(standin, "GET", "/heartbeats", headers={"Accept": "application/vnd.pgrst.object+json"})
    assert (many.status_code, many.json()["code"]) == (406, "PGRST116")


@pytest.mark.parametrize(("method", "path", "params"), [
    ("GET", "/scans", {"symbol": "like.BTC*"}),
    ("GET", "/scans", {"or": "(symbol.eq.A,symbol.eq.B)"}),
    ("GET", "/scans", {"select": "id,signals(id)"}),
    ("DELETE", "/scans", {"id": "eq.1"}),
    ("PUT", "/rpc/heartbeat", {}),
])
def test_what_the_standin_does_not_serve_is_a_400(standin: PostgrestStandin, method: str, path: str,
                                                   params: dict[str, str]) -> None:
    response = call(standin, method, path, params=params)
    assert response.status_code == 400
    assert response.json()["code"] == "STANDIN" and "stand-in does not serve" in response.json()["message"]


def test_root_paths_are_served_and_requests_are_recorded(standin: PostgrestStandin) -> None:
    response = call(standin, "GET", "/signals", prefix="", params={"select": "id", "status": "eq.new"},
                    headers={"Accept-Profile": "public", "Prefer": "count=exact"})
    assert response.status_code == 200
    assert call(standin, "GET", "/signals", headers={"Accept-Profile": "other"}).status_code == 406
    first = standin.requests_seen[0]
    assert first == RecordedRequest("GET", "/signals", [("select", "id"), ("status", "eq.new")], {
        "authorization": f"Bearer {make_jwt(SECRET, 'service_role')}", "accept-profile": "public",
        "prefer": "count=exact", "accept": "*/*"}, None)


def test_supabase_py_drives_it(standin: PostgrestStandin) -> None:
    key = make_jwt(SECRET, "service_role")
    client = create_client(standin.base_url, key, options=ClientOptions(postgrest_client_timeout=10))

    signal_id = client.rpc("emit_signal", {"signal": signal()}).execute().data
    rows = client.table("signals").select("*").eq("status", "new").execute().data
    assert [row["id"] for row in rows] == [signal_id]
    client.table("scans").insert([scan(0), scan(1)], returning="minimal").execute()
    client.table("heartbeats").upsert({"component": "c", "progress": {"n": 1}}, on_conflict="component").execute()
    upserted = client.table("heartbeats").upsert({"component": "c", "progress": {"n": 2}},
                                                 on_conflict="component").execute().data
    assert [row["progress"] for row in upserted] == [{"n": 2}]
    paged = client.table("scans").select("id,reason").in_("decision", ["skip"]).order("id").range(1, 1).execute()
    assert [row["reason"] for row in paged.data] == ["scan 1"]

    emit_call, select_call, insert_call, upsert_call = standin.requests_seen[:4]
    assert (emit_call.method, emit_call.path, emit_call.query) == ("POST", "/rest/v1/rpc/emit_signal", [])
    assert emit_call.body == {"signal": signal() | {"expires_at": emit_call.body["signal"]["expires_at"]}}
    assert emit_call.headers["apikey"] == key and emit_call.headers["authorization"] == f"Bearer {key}"
    assert emit_call.headers["content-profile"] == "public"
    assert (select_call.method, select_call.path, select_call.query) == (
        "GET", "/rest/v1/signals", [("select", "*"), ("status", "eq.new")])
    assert select_call.headers["accept-profile"] == "public"
    assert insert_call.headers["prefer"] == "return=minimal"
    assert ("on_conflict", "component") in upsert_call.query
    assert upsert_call.headers["prefer"] == "return=representation,resolution=merge-duplicates"
