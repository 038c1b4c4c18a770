"""The trade tape: `format` (records, days, paths; pure), `writer_io` (the group-committing
writer and retention) and `readers_io` (every way the stages read it back)."""
