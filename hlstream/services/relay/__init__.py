"""The relay stage: the trade tape and the bar CSV files -> NATS JetStream and PostgreSQL."""
