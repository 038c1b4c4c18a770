"""The three hlstream stages: ingest, aggregator, writer. A service never imports another."""
