"""hlstream: Hyperliquid trades -> exact OHLCV bars in CSV files, with a ZeroMQ bus for taps.

The one import name. The design's top-level folders are its subpackages:

    hlstream.common      what the stages share (config, wire format, time buckets, logging)
    hlstream.services    the three stages: ingest, aggregator, writer
    hlstream.sim         the fake Hyperliquid exchange (tests, demo, bench)
    hlstream.cli ...     the operator's front door (cli, supervision, health, verify, tap
                         command, metrics, demo); `hlstream.tap` is the public, standalone tap

The code lives here, one name per file: the checkout's top-level `common/`, `services/`,
`sim/` and `supervisord.conf` are links into this package, so the tree shows the design's
layout while git, tracebacks, coverage and import linters see `hlstream/...` only. Nothing
named `common`, `services` or `sim` is installed at the top level of site-packages.
"""

STAGES = ("ingest", "aggregator", "writer")  # also supervisord's stop order
