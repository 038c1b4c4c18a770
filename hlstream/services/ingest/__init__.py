"""Ingest stage: Hyperliquid websocket -> normalized, deduplicated trades on the bus."""
