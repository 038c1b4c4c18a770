"""The aggregator stage: owns all bar state, window boundaries and rollover timing."""
