"""`report --out FILE.html` on a real migrated database with a trading history in every table the report
reads; the page is opened in headless Chromium, which must raise no JavaScript error and draw every chart."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from controller.cli.base import Context
from controller.cli.report import report_command
from controller.config import ControllerConfig, Secrets
from tests.support.browser import chromium_path, open_page, png_size
from tests.support.trading_rows import T0, History

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
    from controller.ops.report import read_report

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
