"""The writer stage: the only process that touches CSV files.

It receives finished bars from the aggregator over a ZeroMQ ROUTER socket, appends them with
flock + one write + fsync, repairs holes from REST candleSnapshot, backfills on startup and
acks each bar once it is durably on disk (or already was).
"""
