"""Pure core of ingest: frame parsing (`parse`), dedupe and replay-gap judgement (`dedupe`)."""
