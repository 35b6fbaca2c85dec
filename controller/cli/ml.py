"""`ml train|evaluate|promote|list`: the ML confidence models (flag ml.enabled) (see docs/ml-confidence.md).

`ml train --replay DIR` builds events over a folder of recorded candles (every strategy, vectorised), validates
each strategy's model with purged walk-forward folds, fits it on all events and registers it (inactive);
`--promote` then applies the promotion gate. `ml evaluate` prints the walk-forward table and stores it as an
evaluation record of its own (table ml_evaluations; no model's gate metrics change); `ml evaluate --replay DIR
--model VERSION` scores an existing model on other data and appends that to the model's evaluations, which
the gate reads.
Both end with one line of JSON.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from controller.cli.base import Context, actor, connect, console, fail, require_schema
from controller.config_base import ConfigError

if TYPE_CHECKING:
    import pandas as pd

ml_app = typer.Typer(no_args_is_help=True, help="ML confidence models: train, evaluate, promote, list.")

StrategyOption = Annotated[str | None, typer.Option(help="one strategy (dca, swing, channel); default all")]
DirOption = Annotated[Path | None, typer.Option("--replay", help="folder of recorded candles (default: the "
                                                                 "recorded candles beside the project)")]


def register(app: typer.Typer) -> None:
    app.add_typer(ml_app, name="ml")


def _strategies(ctx: Context) -> Any:
    """The configured strategies (their barriers set each entry's payoff threshold)."""
    from controller.scan.strategy_params import load_strategies

    config = ctx.config
    try:
        return load_strategies(config.resolve(config.loop.strategies_file), config.resolve(config.loop.tiers_file))
    except (ConfigError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None


def _events(ctx: Context, folder: Path | None, strategy: str | None) -> tuple[pd.DataFrame, int]:
    from controller.data.market_data import ohlcv_dir
    from ml.events import build_events, recordings

    config = ctx.config
    folder = folder or ohlcv_dir()
    strategies = _strategies(ctx)
    try:
        found = recordings(folder)
    except (ConfigError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    names = [n for n, _ in strategies.items() if strategy in (None, n)]
    if not names:
        raise fail(f"unknown strategy {strategy!r}: choose from {', '.join(n for n, _ in strategies.items())}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(f"building events from {len(found)} files, strategy by strategy", total=len(names))
        try:
            events, candles = build_events(folder, strategies, config.ml.costs, only=strategy,
                                           progress=lambda *_: progress.advance(task))
        except ValueError as exc:
            raise fail(str(exc)) from None
    console.print(f"{len(events)} labelled entries from {candles} candles in {folder}")
    return events, candles


def _walk_forward(ctx: Context, events: pd.DataFrame, threshold: float) -> dict[str, dict[str, Any]]:
    """strategy -> walk-forward metrics, or {'refused': reason}."""
    from ml import payoff
    from ml.train import TrainingRefused, walk_forward

    results: dict[str, dict[str, Any]] = {}
    strategies = _strategies(ctx)
    groups = list(events.groupby("strategy", sort=True))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        for name, group in groups:
            task = progress.add_task(f"walk-forward {name}", total=ctx.config.ml.train.folds)
            try:
                cut = payoff.for_events(group, strategies, ctx.config.ml.costs, threshold)
                results[str(name)] = walk_forward(group, ctx.config.ml.train, cut,
                                                  progress=lambda _k, t=task: progress.advance(t),
                                                  gate=ctx.config.ml.gate)
            except TrainingRefused as exc:
                results[str(name)] = {"refused": str(exc)}
    return results


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _print_table(title: str, results: dict[str, dict[str, Any]], verdicts: dict[str, str] | None = None) -> None:
    table = Table(title=title)
    for column in ("strategy", "events", "AUC", "Brier", "log loss", "prec@thr", "cover@thr", "rules trades",
                   "rules win", "rules net %", "rules %/unit", "ML win", "ML net %", "ML %/unit", "AUC low",
                   "Brier skill", "edge low"):
        table.add_column(column)
    for name, result in results.items():
        if "refused" in result:
            continue
        o = result["out_of_sample"]
        t = o["trading"]
        g = o.get("gate") or {}
        table.add_row(name, _fmt(o["n"]), _fmt(o["auc"]), _fmt(o["brier"]), _fmt(o["log_loss"]),
                      _fmt(o["precision_at_threshold"]), _fmt(o["coverage_at_threshold"]), _fmt(t["rules_trades"]),
                      _fmt(t["rules_win_rate"]), _fmt(t["rules_net_pnl_pct"], 1),
                      _fmt(t["rules_return_per_unit_pct"]), _fmt(t["ml_win_rate"]), _fmt(t["ml_net_pnl_pct"], 1),
                      _fmt(t["ml_return_per_unit_pct"]), _fmt(g.get("auc", {}).get("low")),
                      _fmt(g.get("brier_skill")), _fmt(g.get("edge", {}).get("low_pct")))
    if any("out_of_sample" in r for r in results.values()):
        console.print(table)
    for name, verdict in (verdicts or {}).items():
        console.print(f"{name}: {verdict}")
    for name, result in results.items():
        if "refused" in result:
            console.print(f"[yellow]{name}[/yellow]: {result['refused']}")
        if "out_of_sample" not in result:
            continue
        calibration = Table(title=f"{name}: calibration (out of sample)")
        for column in ("confidence bin", "entries", "mean confidence", "win rate"):
            calibration.add_column(column)
        for row in result["out_of_sample"]["calibration"]:
            calibration.add_row(row["bin"], str(row["n"]), f"{row['mean_confidence']:.3f}", f"{row['win_rate']:.3f}")
        console.print(calibration)


def _summary(results: dict[str, dict[str, Any]], extra: dict[str, Any] | None = None) -> str:
    out: dict[str, Any] = {}
    for name, result in results.items():
        if "refused" in result:
            out[name] = {"refused": result["refused"]}
            continue
        o = result["out_of_sample"]
        g = o.get("gate") or {}
        out[name] = {"n": o["n"], "auc": o["auc"], "brier": o["brier"], "log_loss": o["log_loss"], **o["trading"],
                     "auc_low": g.get("auc", {}).get("low"), "brier_skill": g.get("brier_skill"),
                     "edge_low_pct": g.get("edge", {}).get("low_pct"), "p": g.get("p")}
    return json.dumps({**(extra or {}), "strategies": out}, default=str)


def _threshold(ctx: Context, conn: Any) -> float:
    """The live ml.min_confidence flag, the floor under each entry's payoff threshold (its default before the
    flags table is filled)."""
    from controller.data import flags

    specs = ctx.flag_specs()
    try:
        return float(flags.live_values(conn, specs)["ml.min_confidence"])
    except Exception:  # no flags table yet: the documented default
        conn.rollback()
        return float(specs.flags["ml.min_confidence"].default)


@ml_app.command("train")
def train_cmd(
    ctx: typer.Context,
    replay: DirOption = None,
    strategy: StrategyOption = None,
    promote: Annotated[bool, typer.Option("--promote", help="apply the promotion gate to each new model")] = False,
) -> None:
    """Build events, validate (purged walk-forward), fit and register a model per strategy."""
    from ml.retrain import train_and_register

    context: Context = ctx.obj
    with connect(context) as conn:
        require_schema(conn)
        threshold = _threshold(context, conn)
    events, _ = _events(context, replay, strategy)
    if events.empty:
        raise fail("no labelled entries: the strategies never entered on these candles, nothing to learn")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        tasks: dict[str, Any] = {}

        def advance(name: str, _fold: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(f"walk-forward {name}", total=context.config.ml.train.folds)
            progress.advance(tasks[name])

        with connect(context) as conn:
            outcome = train_and_register(conn, events, context.config.ml, threshold, actor=actor(), promote=promote,
                                         progress=advance, strategies=_strategies(context))
    results, verdicts, versions = outcome.results, outcome.verdicts, outcome.versions
    _print_table("walk-forward, out of sample", results, verdicts)
    print(_summary(results, {"versions": versions}))
    if not versions:
        raise typer.Exit(1)


@ml_app.command("evaluate")
def evaluate_cmd(
    ctx: typer.Context,
    replay: DirOption = None,
    model: Annotated[str | None, typer.Option("--model", help="score this registered model out of sample")] = None,
    strategy: StrategyOption = None,
) -> None:
    """Print the walk-forward table (and write it to the newest model), or score `--model` on other data."""
    import numpy as np

    from ml import payoff, registry
    from ml.train import scores

    context: Context = ctx.obj
    with connect(context) as conn:
        require_schema(conn)
        threshold = _threshold(context, conn)
        if model is None:
            events, _ = _events(context, replay, strategy)
            results = _walk_forward(context, events, threshold)
            recorded = {name: registry.record_evaluation(conn, name, str(replay) if replay else "default", result,
                                                         actor=actor())
                        for name, result in results.items() if "out_of_sample" in result}
            _print_table("walk-forward, out of sample", results,
                         {n: f"stored as evaluation {i} (no model's metrics changed)" for n, i in recorded.items()})
            print(_summary(results, {"evaluations": recorded}))
            return
        try:
            loaded = registry.load(conn, model)
        except (registry.ArtefactMismatch, registry.UnknownModel) as exc:
            raise fail(str(exc)) from None
        events, _ = _events(context, replay, loaded.strategy)
        if events.empty:
            raise fail(f"no labelled {loaded.strategy} entries in that folder: nothing to score")
        p = loaded.model.predict(events)
        y = events["label"].to_numpy(dtype=np.int64)
        cut = payoff.for_events(events, _strategies(context), context.config.ml.costs, threshold).to_numpy()
        result = {"out_of_sample": scores(y, p, events["net_return_pct"].to_numpy(dtype=np.float64), cut)}
        overlap = events["decided_at"].min() <= registry_training_end(conn, model)
        evaluation = {"replay": str(replay) if replay else "default", "at": datetime.now().astimezone().isoformat(),
                      "overlaps_training_window": bool(overlap), **result}
        registry.add_evaluation(conn, model, evaluation)
    _print_table(f"{model} on other data", {loaded.strategy: result})
    if overlap:
        console.print("[yellow]warning[/yellow]: these candles start before the model's training window ended; "
                      "pairs it never saw are out of sample, the same pairs are not")
    print(_summary({loaded.strategy: result}, {"model": model, "overlaps_training_window": bool(overlap)}))


def registry_training_end(conn: Any, version: str) -> Any:
    return conn.execute("select training_end from ml_models where version = %s", (version,)).fetchone()[0]


@ml_app.command("promote")
def promote_cmd(
    ctx: typer.Context,
    version: str,
    force: Annotated[bool, typer.Option("--force", help="promote even when the gate refuses (recorded)")] = False,
    note: Annotated[str | None, typer.Option(help="why (recorded with a forced promotion)")] = None,
) -> None:
    """Make VERSION its strategy's active model if every gate figure holds and it beats the active model (or
    --force)."""
    from ml import registry

    with connect(ctx.obj) as conn:
        require_schema(conn)
        try:
            promoted, why = registry.promote(conn, version, actor=actor(), force=force, note=note,
                                             params=ctx.obj.config.ml.gate)
        except registry.UnknownModel as exc:
            raise fail(str(exc)) from None
    if not promoted:
        raise fail(f"{version} kept inactive: {why} (--force overrides, and is recorded)", code=1)
    console.print(f"{version} is active: {why}")


@ml_app.command("list")
def list_cmd(ctx: typer.Context) -> None:
    """The registered models, newest first per strategy."""
    from ml import registry

    with connect(ctx.obj) as conn:
        require_schema(conn)
        models = registry.list_models(conn)
    table = Table(title="ml models")
    table.add_column("version", no_wrap=True)
    for column in ("strategy", "active", "created", "training window", "AUC", "ML vs rules %/unit", "promoted by",
                   "note"):
        table.add_column(column)
    for m in models:
        o = (m["metrics"] or {}).get("out_of_sample") or {}
        t = o.get("trading") or {}
        edge = (f"{t['ml_return_per_unit_pct']:+.4f} vs {t['rules_return_per_unit_pct']:+.4f}" if t else "-")
        note = m["promotion_note"] or ""
        if m.get("demoted_at") is not None:
            note = f"demoted by {m['demoted_by']}: {m['demotion_note']}"
        table.add_row(m["version"], m["strategy"] or "all", "yes" if m["active"] else "",
                      f"{m['created_at']:%Y-%m-%d %H:%M}",
                      f"{m['training_start']:%Y-%m-%d} .. {m['training_end']:%Y-%m-%d}", _fmt(o.get("auc")), edge,
                      m["promoted_by"] or "", note)
    console.print(table)
    if not models:
        console.print("no models yet: python -m controller ml train --replay DIR")


def phase3_setup(context: Context, replay: Path | None, exchange: str | None, hours: float) -> int:
    """What `flags phase 3` does after setting the flags, offline on recorded candles: train a model per strategy
    on what was known before the last `hours` of the recordings (labels ending before that window), register
    it and apply the promotion gate (the reason printed either way), then replay that window with ML on.
    Returns 0 when the scans ran (with or without an active model), 1 when they could not."""
    from datetime import timedelta

    import pandas as pd

    from controller import wiring as app_wiring
    from controller.data.market_data import ReplaySource, SimClock, ohlcv_dir, timeframe_seconds
    from controller.data.migrate import MigrationError
    from controller.scan import pipeline
    from controller.scan.strategy_params import load_strategies
    from ml.events import events_from_series, series_before
    from ml.retrain import train_and_register

    config = context.config
    folder = replay or config.ml.retrain.replay or ohlcv_dir()
    try:
        strategies = load_strategies(config.resolve(config.loop.strategies_file),
                                     config.resolve(config.loop.tiers_file))
        probe = ReplaySource(folder, None, clock=SimClock(datetime.now(UTC)))
    except (ConfigError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    counts = {e: len(ReplaySource(folder, e, clock=probe.clock).symbols()) for e in probe.exchanges()}
    if not counts:
        raise fail(f"no recorded candles in {folder}")
    exchange = exchange or max(sorted(counts), key=lambda e: counts[e])  # the exchange with the most pairs
    source = ReplaySource(folder, exchange, clock=probe.clock)
    ends = []
    for symbol in source.symbols():
        timeframe = source.timeframes(symbol)[0]
        ends.append(source.span(symbol, timeframe)[1] + timedelta(seconds=timeframe_seconds(timeframe)))
    end = min(ends)  # every pair still has candles up to here
    start = end - timedelta(hours=hours)

    console.print(f"phase 3: training on {folder} before {start:%Y-%m-%d %H:%M} ({exchange}), then "
                  f"{hours:g} h replayed with ml.enabled up to {end:%Y-%m-%d %H:%M}")
    series = series_before(folder, start, exchange)
    events, candles = events_from_series(series, strategies, config.ml.costs)
    if not events.empty:  # a label whose horizon reaches into the window would leak it
        events = events[pd.to_datetime(events["horizon_end"], utc=True) < pd.Timestamp(start)].reset_index(drop=True)
    console.print(f"{len(events)} labelled entries from {candles} candles")
    with connect(context) as conn:
        require_schema(conn)
        threshold = _threshold(context, conn)
        outcome = train_and_register(conn, events, config.ml, threshold, actor=actor(), promote=True,
                                     strategies=strategies)
        conn.commit()
        active = dict(conn.execute("select strategy, version from ml_models where active").fetchall())
    _print_table("walk-forward, out of sample (before the window)", outcome.results, outcome.verdicts)
    for name in sorted(n for n, _ in strategies.items() if n not in outcome.results):
        console.print(f"[yellow]{name}[/yellow]: not trained: no labelled entries before the window")
    if active:
        console.print("active models: " + ", ".join(f"{s} {v}" for s, v in sorted(active.items())), highlight=False)
    else:
        console.print("no active model: the scans below score nothing and trade on the rules alone")

    try:
        wiring = app_wiring.build(config, context.secrets, replay=folder, exchange=exchange, start=start)
    except (ConfigError, FileNotFoundError, MigrationError) as exc:
        raise fail(str(exc)) from None
    if wiring.clock is None:
        raise fail("internal: a replay without a simulated clock")
    try:
        reports = pipeline.run_replay(wiring.scanner, wiring.clock.advance, wiring.clock.now, end,
                                      wiring.base_timeframe_s(), threading.Event())
    finally:
        wiring.store.close()
    arms = {k.removeprefix("ml_"): v for k, v in sorted(wiring.scanner.counters.items())
            if k.startswith("ml_") and k not in ("ml_failures", "ml_record_failures")}
    failures = wiring.scanner.counters["ml_failures"]
    console.print(f"replayed {len(reports)} scans with ML: {sum(r.emitted for r in reports)} signal(s) emitted; "
                  f"candidates scored by arm: {', '.join(f'{a} {n}' for a, n in arms.items()) or 'none'}"
                  + (f"; scoring failed {failures} time(s)" if failures else ""), highlight=False)
    print(json.dumps({"phase": 3, "exchange": exchange, "window_start": start.isoformat(),
                      "window_end": end.isoformat(), "events": len(events), "active": active,
                      "verdicts": outcome.verdicts,
                      "refused": {n: r["refused"] for n, r in outcome.results.items() if "refused" in r},
                      "scans": len(reports), "emitted": sum(r.emitted for r in reports), "arms": arms}))
    return 0 if reports else 1
