"""The history the retention tests run on (described in tests/integration/ops/test_retention.py): candles of
every tier reaching past their horizons, scans, predictions, signals with orders, fills and a trade, and shadow
outcomes."""

SEED = """
select create_candle_partitions('2018-03-01', '2025-06-30');
-- a year of 1m candles, one every 10 minutes, for three pairs
insert into candles
select 'binance', s, '1m', ts, 100, 101, 99, 100, 1
  from unnest(array['BTC-USDT', 'ETH-USDT', 'SOL-USDT']) s,
       generate_series('2024-06-01'::timestamptz, '2025-06-14 23:50', '10 minutes') ts;
-- one day of 1m candles from 2018: its month is past every delete horizon
insert into candles
select 'binance', 'BTC-USDT', '1m', ts, 1, 1, 1, 1, 1
  from generate_series('2018-03-01'::timestamptz, '2018-03-01 23:59', '1 minute') ts;
insert into candles
select 'binance', 'BTC-USDT', tf, ts, 100, 101, 99, 100, 1
  from (values ('15m', '2024-01-01'::timestamptz, interval '15 minutes'),
               ('1h', '2023-01-01'::timestamptz, interval '1 hour'),
               ('1d', '2019-01-01'::timestamptz, interval '1 day')) v(tf, first, step),
       lateral generate_series(first, '2025-06-14 23:59', step) ts;

insert into ml_models (version, features, training_start, training_end, artefact_path, artefact_sha256)
values ('m1', '["rsi"]', '2024-01-01', '2024-06-01', 'models/m1.joblib', 'x');

-- signals: an open position from December (executing), a closed one with its order, fill and trade
insert into signals (id, created_at, expires_at, strategy, exchange, symbol, side, price, quote_amount,
                     take_profit_pct, confidence, status, claimed_by, claimed_at, executing_at, finished_at)
values ('00000000-0000-0000-0000-0000000000a1', '2024-12-21 10:00', '2024-12-21 10:30', 'DCA', 'binance',
        'BTC-USDT', 'buy', 100, 50, 3, 0.7, 'executing', 'bot-1', '2024-12-21 10:01', '2024-12-21 10:01', null),
       ('00000000-0000-0000-0000-0000000000c1', '2024-12-22 10:00', '2024-12-22 10:30', 'DCA', 'binance',
        'ETH-USDT', 'buy', 100, 50, 3, 0.7, 'closed', 'bot-1', '2024-12-22 10:01', '2024-12-22 10:01',
        '2024-12-22 14:00');
insert into orders (client_order_id, signal_id, exchange, symbol, side, purpose, order_type, price, amount, status,
                    filled_amount, created_at, updated_at)
values ('c1-entry', '00000000-0000-0000-0000-0000000000c1', 'binance', 'ETH-USDT', 'buy', 'entry', 'market', 100,
        0.5, 'filled', 0.5, '2024-12-22 10:02', '2024-12-22 10:02');
insert into fills (client_order_id, exchange_trade_id, signal_id, price, amount, ts)
values ('c1-entry', 't1', '00000000-0000-0000-0000-0000000000c1', 100, 0.5, '2024-12-22 10:02');
insert into trades (signal_id, exchange, symbol, side, amount, entry_price, exit_price, pnl_quote, pnl_pct,
                    exit_reason, opened_at, closed_at)
values ('00000000-0000-0000-0000-0000000000c1', 'binance', 'ETH-USDT', 'buy', 0.5, 100, 103, 1.5, 3,
        'take_profit', '2024-12-22 10:02', '2024-12-22 14:00');

-- scans: four a day (two strategies, two decisions) from 2024-12-01 to 2025-06-14
insert into scans (candle_ts, scanned_at, strategy, exchange, symbol, timeframe, decision, reason)
select ts, ts + interval '5 seconds', st, 'binance', 'BTC-USDT', '15m', dec,
       case dec when 'skip' then format('rsi %s above 56', 60 + extract(hour from ts)) else 'drop -4.1% from high' end
  from generate_series('2024-12-01'::timestamptz, '2025-06-14 23:59', '12 hours') ts,
       unnest(array['DCA', 'CHANNEL']) st, unnest(array['skip', 'enter']) dec;
-- old scans that stay: the open position's, the closed signal's, one a pending shadow outcome refers to;
-- and one only an evaluated outcome refers to, which goes
insert into scans (id, candle_ts, scanned_at, strategy, exchange, symbol, timeframe, decision, reason, signal_id)
overriding system value
values (900001, '2024-12-21 10:00', '2024-12-21 10:00', 'DCA', 'binance', 'BTC-USDT', '15m', 'enter', 'drop',
        '00000000-0000-0000-0000-0000000000a1'),
       (900002, '2024-12-22 10:00', '2024-12-22 10:00', 'DCA', 'binance', 'ETH-USDT', '15m', 'enter', 'drop',
        '00000000-0000-0000-0000-0000000000c1'),
       (900003, '2024-12-23 10:00', '2024-12-23 10:00', 'DCA', 'binance', 'SOL-USDT', '15m', 'skip', 'rsi 70', null),
       (900004, '2024-12-24 10:00', '2024-12-24 10:00', 'DCA', 'binance', 'SOL-USDT', '15m', 'skip', 'rsi 71', null);
insert into shadow_variations (id, name, strategy, params, params_hash, base_params_hash)
overriding system value values (1, 'QUICK_EXITS', 'DCA', '{}', 'h1', 'h0');
insert into shadow_outcomes (variation_id, signal_id, scan_id, exchange, symbol, candle_ts, would_enter, status,
                             evaluated_at)
values (1, '00000000-0000-0000-0000-0000000000a1', 900003, 'binance', 'SOL-USDT', '2024-12-23 10:00', true,
        'pending', null),
       (1, null, 900004, 'binance', 'SOL-USDT', '2024-12-24 10:00', false, 'evaluated', '2024-12-25');

-- ML feature rows: one a day, and one linked to the open signal
insert into ml_predictions (model_version, strategy, exchange, symbol, candle_ts, confidence, created_at)
select 'm1', 'DCA', 'binance', 'BTC-USDT', ts, 0.5, ts
  from generate_series('2024-12-01'::timestamptz, '2025-06-14', '1 day') ts;
insert into ml_predictions (model_version, signal_id, strategy, exchange, symbol, candle_ts, confidence, created_at)
values ('m1', '00000000-0000-0000-0000-0000000000a1', 'DCA', 'binance', 'BTC-USDT', '2024-12-21 10:00', 0.8,
        '2024-12-21 10:00');
"""
