"""hlstream: Hyperliquid trades -> exact OHLCV bars in CSV files, with a ZeroMQ bus for taps.

Subpackages: `common` (what the stages share), `services` (the stages), `sim` (the fake
exchange); the modules here are the operator's front door, and `hlstream.tap` the public,
standalone tap. The checkout's top-level `common/`, `services/`, `sim/` and
`supervisord.conf` are links into this package.
"""

STAGES = ("ingest", "aggregator", "writer")  # also supervisord's stop order
