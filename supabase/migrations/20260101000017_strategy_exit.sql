-- Strategy exits (issue 11): the controller's exit signal closes the entry's position at market, and the
-- trade records why: 'strategy_exit' (CHANNEL at the band's top, the RSI exits of CHANNEL and DCA).
alter table trades drop constraint trades_exit_reason_check;
alter table trades add constraint trades_exit_reason_check
    check (exit_reason in ('take_profit', 'stop_loss', 'time_limit', 'trailing_stop', 'order_health', 'manual',
                           'flat', 'strategy_exit'));
