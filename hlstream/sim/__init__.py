"""A local fake Hyperliquid exchange for integration tests and the offline demo.

`sim.market` holds the pure market model (prices, trades, candles, reference bars);
`sim.exchange` serves it over the real wire protocol (websocket + POST /info) on 127.0.0.1;
`python -m hlstream.sim` runs one from the command line.
"""
