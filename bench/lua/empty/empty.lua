-- bench/lua/empty: one rule that does nothing, for the cost of one hook
-- (docs/performance.md, "Lua rules").
rspamd_config.BENCH_EMPTY = function(task) end
