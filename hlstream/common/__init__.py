"""Code shared by more than one hlstream stage: config, wire format, time, decimals, logging."""
