"""The writer stage: the only process that appends to the CSV files (bars from the aggregator,
REST backfill and hole repair), acking each bar once it is durably on disk."""
