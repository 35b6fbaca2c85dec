"""`report --out FILE.html` on a real migrated database with a trading history in every table the report
reads; the page is opened in headless Chromium, which must raise no JavaScript error and draw every chart."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from bridge.queue_client import PostgresQueue
from bridge.resilience import RetryPolicy
from bridge.schemas import NewSignal
from controller.cli.base import Context
from controller.cli.report import report_command
from controller.config import ControllerConfig, Secrets
from controller.data.storage.postgres import PostgresStore
from controller.ops.phase_check import check
from controller.ops.report import read_report
from controller.ops.report_figures import by_gate
from controller.scan.signals import QuoteSizing, SizingParams
from tests.support.browser import chromium_path, open_page, png_size
from tests.support.report_page import cards, expected_cards, sql_headline
from tests.support.trading_rows import T0, History

NO_WAIT = RetryPolicy(base_s=0.0, cap_s=0.0, tries=3)
needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (scripts/setup.sh "
                                    "installs Debian's chromium package): the report is not opened in a browser")

# Charts drawn: div ids of every Plotly figure, and how many finished rendering (Plotly adds .main-svg).
COUNT_CHARTS = """JSON.stringify({
  charts: Array.from(document.querySelectorAll('div.chart .plotly-graph-div')).map(d => d.id),
  drawn: Array.from(document.querySelectorAll('div.chart .js-plotly-plot'))
              .filter(d => d.querySelector('.main-svg') && d.querySelectorAll('.trace, .point, path').length > 0)
              .map(d => d.id),
  empty: Array.from(document.querySelectorAll('p.empty')).map(p => p.textContent),
  ticks: Array.from(document.querySelectorAll('.ytick text, .xtick text')).map(t => t.textContent),
  height: document.documentElement.scrollHeight
})"""


def write_report(url: str, out: Path) -> str:
    path = report_command(Context(ControllerConfig(), Secrets(DATABASE_URL=url)), out)
    return path.read_text()


def full_history(conn: psycopg.Connection) -> None:
    """Trades on two pairs with their candles, ML predictions in both arms, shadows, recommendations, a rejection."""
    h = History(conn)
    h.model()
    conn.execute("select create_candle_partitions(%s, %s)", (T0 - timedelta(days=1), T0 + timedelta(days=3)))
    for symbol, base in (("ETH-BTC", 0.1), ("LTC-BTC", 0.018)):
        conn.execute("insert into candles select 'bittrex', %s, '5m', ts, %s * (1 + 0.01 * sin(n / 20.0)),"
                     " %s * (1.004 + 0.01 * sin(n / 20.0)), %s * (0.996 + 0.01 * sin(n / 20.0)),"
                     " %s * (1 + 0.01 * sin((n + 1) / 20.0)), 10"
                     " from generate_series(0, 700) n, lateral (select %s + n * interval '5 minutes' as ts) t",
                     (symbol, base, base, base, base, T0))
    for i in range(24):
        symbol, entry = ("ETH-BTC", 0.1) if i % 2 else ("LTC-BTC", 0.018)
        arm = "boosted" if i % 3 else "control"
        sid = h.trade((2.5, -1.5, 3.0, -2.0)[i % 4], symbol=symbol, entry=entry, ml_confidence=0.5 + (i % 5) / 10,
                      strategy="DCA" if i % 4 else "CHANNEL")
        h.prediction(sid, 0.5 + (i % 5) / 10, arm=arm)
    h.signal(status="rejected", reason="price moved 2.1% from the reference")
    for worst in (0.97, 1.2, 0.61):  # one gate, three texts
        h.signal(status="rejected", reason=f"price moved {worst:.2f}% within 5 s (max 0.5%)")
    h.open_position()
    champion, aggressive = h.variation("CHAMPION"), h.variation("AGGRESSIVE")
    for i in range(10):
        h.outcome(champion, -0.5 + (i % 3) * 0.2)
        h.outcome(aggressive, 1.0 + (i % 3) * 0.2)
    h.performance(champion, 10, 3, -2.0)
    h.performance(aggressive, 10, 8, 12.0)
    h.rollback(h.recommendation("applied"))
    h.recommendation("applied")


def test_the_report_is_one_self_contained_file_with_every_section(migrated_db: str, tmp_path: Path) -> None:
    with psycopg.connect(migrated_db) as conn:
        full_history(conn)
    page = write_report(migrated_db, tmp_path / "report.html")
    assert not re.search(r"<script[^>]+src=", page) and "<link" not in page  # nothing fetched when opened
    assert page.count("<script>") >= 2 and "Plotly" in page  # Plotly's own JavaScript is inlined
    for title in ("Headline figures", "Phase checklist", "Equity curve and drawdown",
                  "P&amp;L per strategy, exit reason and pair", "Per exit reason", "Open positions",
                  "Signal funnel and rejection reasons", "Trades on the price chart", "calibration",
                  "leaderboard", "Storage per table"):
        assert title in page
    assert "price moved 2.1% from the reference" in page  # the rejection reason is shown
    assert "μ" not in re.sub(r"<script>.*?</script>", "", page, flags=re.S)  # amounts name their currency
    assert re.search(r"<td>price stability</td><td>3</td>", page)  # three texts, one gate
    assert "<td>LTC-BTC</td><td>hb-1</td>" in page or "<td>LTC-BTC</td><td>bot</td>" in page  # the open position
    assert 'class="empty"' not in page  # every section had data
    assert "Phase 1: rules trading on paper: holds" in page and "Phase 3: ML as a booster: does not hold" in page


def test_sections_without_data_say_so(migrated_db: str, tmp_path: Path) -> None:
    page = write_report(migrated_db, tmp_path / "empty.html")
    for reason in ("No data: no closed trade yet", "No data: no signal emitted yet", "No data: no open position",
                   "No data: no ML prediction is linked to a closed trade", "No data: no recommendation written",
                   "No data: no shadow variation has been evaluated"):
        assert reason in page
    assert "Storage per table" in page and 'id="storage"' in page  # the schema itself has a size


@needs_chromium
def test_the_report_renders_every_chart_in_chromium_without_a_javascript_error(migrated_db: str,
                                                                               tmp_path: Path) -> None:
    with psycopg.connect(migrated_db) as conn:
        full_history(conn)
    path = tmp_path / "report.html"
    write_report(migrated_db, path)
    screenshot = tmp_path / "report.png"
    run = open_page(path, COUNT_CHARTS, screenshot=screenshot, settle_s=2.0)
    assert run.errors == []

    seen = json.loads(run.value)
    assert len(seen["charts"]) == len(set(seen["charts"]))  # one div per chart, each id unique in the page
    expected = {f"chart-{name}" for name in ("equity", "pnl", "funnel", "rejections", "price-0", "price-1",
                                             "calibration", "ml-arms", "leaderboard", "recommendations", "storage")}
    assert set(seen["charts"]) == expected
    assert set(seen["drawn"]) == expected, f"not drawn: {expected - set(seen['drawn'])}"
    assert seen["empty"] == []
    assert seen["ticks"] and not [t for t in seen["ticks"] if "μ" in t or "m" == t[-1:]]  # no SI-prefixed amounts
    # the screenshot is the whole page, far taller than the 900 px window
    width, height = png_size(screenshot)
    assert height == seen["height"] > 3 * 900 and width > 1200


@needs_chromium
def test_the_browser_check_catches_a_javascript_error(tmp_path: Path) -> None:
    """The harness itself can fail: a page that throws is reported, with its message."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('bad data'); undefinedFunction()</script></body></html>")
    run = open_page(page, "document.querySelectorAll('div.chart').length")
    assert any("undefinedFunction" in e for e in run.errors) and any("bad data" in e for e in run.errors)
    assert run.value == 0


def test_an_out_file_in_a_missing_folder_is_refused_before_reading(migrated_db: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    with pytest.raises(typer.Exit) as exc:
        write_report(migrated_db, tmp_path / "no" / "report.html")
    assert exc.value.exit_code == 2
    assert capsys.readouterr().err == f"error: --out: folder {tmp_path / 'no'} does not exist\n"


def test_a_replays_trades_are_marked_at_their_decision_candle_not_at_the_executor_clock(migrated_db: str) -> None:
    """In a replay the executor's clock runs years after the candles; the scan row puts a trade back in market
    time, so its entry and exit land on the pair's price chart."""
    with psycopg.connect(migrated_db) as conn:
        full_history(conn)
        conn.execute("update trades set opened_at = opened_at + interval '3000 days',"
                     " closed_at = closed_at + interval '3000 days'")
        decided = T0 + timedelta(hours=7)
        sid = conn.execute("select signal_id from trades order by closed_at limit 1").fetchone()[0]
        conn.execute("insert into scans (candle_ts, strategy, exchange, symbol, timeframe, decision, reason,"
                     " signal_id) values (%s, 'DCA', 'bittrex', 'LTC-BTC', '5m', 'enter', 'dip', %s)", (decided, sid))
        conn.commit()
        data = read_report(conn)
    marked = next(t for t in data.trades if t["opened_at"] == decided)
    assert marked["closed_at"] == decided + timedelta(minutes=20)  # the holding period is kept
    assert "LTC-BTC" in data.candles  # candles exist around that trade's market time
    unscanned = [t for t in data.trades if t["opened_at"] != decided]
    assert all(t["opened_at"] > T0 + timedelta(days=2999) for t in unscanned)  # no scan row: the order's own time


def test_the_headline_figures_equal_a_computation_straight_from_the_trades_table(migrated_db: str,
                                                                               tmp_path: Path) -> None:
    """The figures a trader reads first, recomputed here in SQL from the rows of `trades` alone, on the capital
    the controller config gives the quote currency."""
    with psycopg.connect(migrated_db) as conn:
        h = History(conn)
        for i, pnl_pct in enumerate((2.5, -1.5, 3.0, -2.0, 0.8, -4.0, 1.2, 2.2, -0.6, 3.3)):
            h.trade(pnl_pct, symbol="ETH-BTC", entry=0.1, amount=0.02 + i * 0.001)
        # holding times of 1 to 29 min; trades open 30 min apart, so the closing order is the opening order
        conn.execute("update trades set closed_at = opened_at"
                     " + make_interval(mins => (abs(hashtext(signal_id::text)) % 29) + 1)")
        expected = sql_headline(conn, 0.4)
        conn.commit()
    config = ControllerConfig(sizing=SizingParams(quotes={"BTC": QuoteSizing(amount=0.002, balance=0.4)}))
    path = report_command(Context(config, Secrets(DATABASE_URL=migrated_db)), tmp_path / "r.html")
    page = path.read_text()
    assert "Closed trades in BTC, starting capital 0.40 BTC" in page
    assert cards(page) == expected_cards(expected, "BTC") and expected.trades == 10 and expected.drawdown_pct > 0
    assert "not compounded" in page and "μ" not in re.sub(r"<script>.*?</script>", "", page, flags=re.S)


def test_without_a_known_capital_the_return_is_not_guessed(migrated_db: str, tmp_path: Path) -> None:
    with psycopg.connect(migrated_db) as conn:
        History(conn).trade(2.0)
    page = write_report(migrated_db, tmp_path / "r.html")  # the default config sizes USD quotes only
    shown = cards(page)
    assert shown["net return"] == "—" and shown["max drawdown"].startswith("— · ")
    assert "starting capital unknown" in page and "none known: set sizing.quotes.&lt;quote&gt;.balance" in page


def event(queue: PostgresQueue, signal_id: UUID, kind: str, **fields: object) -> None:
    queue.report_payload({"type": kind, "signal_id": str(signal_id), "ts": datetime.now(UTC).isoformat(), **fields})


def entry_order(queue: PostgresQueue, signal_id: UUID, coid: str, purpose: str, fill: bool) -> None:
    """An order as the executor reports it: created, then filled and completed, or cancelled unfilled."""
    common = {"client_order_id": coid, "exchange": "bittrex", "symbol": "ETH-BTC",
              "side": "buy" if purpose == "entry" else "sell", "purpose": purpose}
    event(queue, signal_id, "order_created", order_type="market", amount=0.02, **common)
    if fill:
        event(queue, signal_id, "order_filled", exchange_trade_id=f"{coid}-1", amount=0.02,
              price=0.1 if purpose == "entry" else 0.102, fee_quote=0.000002, **common)
    event(queue, signal_id, "order_completed" if fill else "order_cancelled", **common)


def test_the_funnel_only_narrows_and_rejections_group_by_gate_on_the_real_queue(migrated_db: str,
                                                                               tmp_path: Path) -> None:
    """Signals through the real queue functions (emit, claim, ack, report_order_event): one complete trade
    closed by a strategy exit; an entry whose order was cancelled unfilled and which the bot then closed (its
    status is closed, yet it never filled: counting by status made closed exceed filled); two entries the
    stability gate rejected; one that expired in the queue; and an exit the queue rejected because its entry
    had no position. The dashboard's view, the report and `phase check` must show the same narrowing funnel."""
    store, queue = PostgresStore(migrated_db), PostgresQueue(migrated_db, retry=NO_WAIT)
    try:
        traded = store.emit_signal(new_signal("ETH-BTC"))
        [claimed] = queue.claim("hb-1", 1, 60)
        queue.ack(traded, "hb-1", "executing")
        entry_order(queue, traded, "in-traded", "entry", fill=True)
        strategy_exit = store.emit_signal(new_signal("ETH-BTC", side="sell", kind="exit", entry_signal_id=traded,
                                                     confidence=1.0))
        assert [s.id for s in queue.claim("hb-1", 0, 60)] == [strategy_exit]  # the exit goes to the entry's bot
        queue.ack(strategy_exit, "hb-1", "executing")
        entry_order(queue, traded, "out-traded", "exit", fill=True)
        event(queue, traded, "position_closed", exchange="bittrex", symbol="ETH-BTC", side="buy", amount=0.02,
              entry_price=0.1, exit_price=0.102, fees_quote=0.000004, pnl_quote=0.000036, pnl_pct=1.8,
              exit_reason="strategy_exit", opened_at=datetime.now(UTC).isoformat())
        queue.ack(strategy_exit, "hb-1", "closed")

        unfilled = store.emit_signal(new_signal("ETH-BTC"))
        [claimed] = queue.claim("hb-1", 1, 60)
        assert claimed.id == unfilled
        queue.ack(unfilled, "hb-1", "executing")
        entry_order(queue, unfilled, "in-unfilled", "entry", fill=False)
        exit_id = store.emit_signal(new_signal("ETH-BTC", side="sell", kind="exit", entry_signal_id=unfilled,
                                               confidence=1.0))
        queue.ack(unfilled, "hb-1", "closed")
        for symbol, worst in (("LTC-BTC", 0.97), ("NEO-BTC", 1.2)):
            store.emit_signal(new_signal(symbol))
            [claimed] = queue.claim("hb-1", 1, 60)
            queue.ack(claimed.id, "hb-1", "rejected", f"price moved {worst:.2f}% within 5 s (max 0.5%)")
        expired = store.emit_signal(new_signal("XRP-BTC"))
    finally:
        store.close()
    with psycopg.connect(migrated_db) as conn:
        # its expiry passes before any executor polls (claim_signals expires what it finds past due)
        conn.execute("update signals set expires_at = now() - interval '1 second' where id = %s", [expired])
        conn.commit()
    try:
        assert queue.claim("hb-1", 5, 60) == []  # expires that one, and resolves the exit with no position
    finally:
        queue.close()
    with psycopg.connect(migrated_db) as conn:
        view = conn.execute("select sum(emitted), sum(claimed), sum(ordered), sum(filled), sum(closed),"
                            " sum(rejected), sum(expired), sum(open), sum(waiting) from dashboard_signal_funnel"
                            ).fetchone()
        exits = conn.execute("select sum(emitted), sum(claimed), sum(executed), sum(rejected), sum(expired),"
                             " sum(open) from dashboard_exit_signals").fetchone()
        by_status = conn.execute("select count(*) filter (where status = 'closed'), count(*) filter (where"
                                 " exists (select 1 from fills f where f.signal_id = s.id)) from signals s"
                                 " where kind = 'entry'").fetchone()
        exit_reason = conn.execute("select reject_reason from signals where id = %s", [exit_id]).fetchone()[0]
        data = read_report(conn)
        phase1 = {c.name: c.figure for c in check(conn, [1])[0].checks}
    assert by_status == (2, 1)  # by status, 2 entries closed of which 1 ever filled
    assert view == (5, 4, 2, 1, 1, 2, 1, 0, 0)  # emitted >= claimed >= ordered >= filled >= closed
    assert exits == (2, 1, 1, 1, 0, 0)  # the strategy exit executed, the one without a position rejected
    assert data.funnel.stages() == [("emitted", 5), ("claimed", 4), ("ordered", 2), ("filled", 1), ("closed", 1)]
    assert (data.funnel.rejected, data.funnel.expired, data.funnel.never_claimed) == (2, 1, 1)
    assert (data.exits.emitted, data.exits.executed, data.exits.rejected) == (2, 1, 1)
    assert exit_reason == f"entry {unfilled} closed without a fill: no position to exit"
    assert phase1["signals reaching Hummingbot"] == (
        "4 of 5 entry signals claimed by an executor, 0 waiting, 1 expired unclaimed; entry funnel: 5 emitted, "
        "4 claimed, 2 ordered, 1 filled, 1 closed; exit signals: 2 emitted, 1 claimed, 1 executed, 1 rejected, "
        "0 expired")
    gates = {g.gate: (g.signals, g.texts) for g in by_gate(data.rejections)}
    assert gates == {"price stability": (2, 2), "exit without a position": (1, 1)}
    page = write_report(migrated_db, tmp_path / "r.html")
    assert "2 emitted, 1 executed, 1 rejected, 0 expired, 0 open" in page
    assert "By status: 2 rejected, 1 expired, 0 open (0 waiting for an executor)" in page
    assert re.search(r"<td>exit without a position</td><td>1</td>.*?<td>entry [0-9a-f-]+ closed without a fill", page)


def test_a_trade_without_a_logged_entry_fill_stops_the_funnel_at_ordered_and_is_named(migrated_db: str,
                                                                                     tmp_path: Path) -> None:
    with psycopg.connect(migrated_db) as conn:
        h = History(conn)
        h.trade(2.0)
        lost = h.trade(-1.0)
        conn.execute("delete from fills f using orders o where o.client_order_id = f.client_order_id"
                     " and o.signal_id = %s and o.purpose = 'entry'", [lost])
        conn.commit()
        data = read_report(conn)
    assert data.funnel.stages() == [("emitted", 2), ("claimed", 2), ("ordered", 2), ("filled", 1), ("closed", 1)]
    assert data.funnel.skipped == {"filled": 1}
    assert "counted up to the stage they skipped): 1 without filled." in write_report(migrated_db, tmp_path / "r.html")


def new_signal(symbol: str, **extra: object) -> NewSignal:
    fields: dict[str, object] = {
        "strategy": "channel", "exchange": "bittrex", "symbol": symbol, "side": "buy", "price": 0.1,
        "quote_amount": 0.002, "take_profit_pct": 4.0, "stop_loss_pct": 14.6, "confidence": 0.7,
        "expires_at": datetime.now(UTC) + timedelta(minutes=10)}
    return NewSignal(**{**fields, **extra})
