"""A local fake Hyperliquid exchange for integration tests, bench and the offline demo.
`market` is the pure model (prices, trades, candles, reference bars); `exchange.FakeExchange`
serves it on 127.0.0.1 (`ws` the websocket feed, `rest` POST /info, `faults` the switches);
`python -m hlstream.sim` runs one from the command line."""
