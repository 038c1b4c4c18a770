"""Trade -> tap latency, measured in its own process so the benchmark's other threads
(the fake exchange) cannot delay it: `python -m bench.taplat ENDPOINT SECONDS`.

Prints one JSON line: p50/p90/p99/max of (receipt at the tap - ingest's `recv_us`, the
microsecond stamp taken when it read the frame) and p50/p99 of (receipt - the trade's
exchange time), in ms, and the message count. With `TAPLAT_RAW=FILE` it also writes one
line per message, `recv_us receipt_us trades topic`, to see where in a burst the slow ones are.
"""

from __future__ import annotations

import json
import os
import sys
import time

from hlstream.tap import Tap


def percentile(values: list[float], pct: float) -> float | None:
    """The `pct`-th percentile (nearest rank) of `values`, rounded to 3 places; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(pct / 100 * len(ordered)))], 3)


def main() -> None:
    endpoint, seconds = sys.argv[1], float(sys.argv[2])
    tap = Tap(endpoint, ["trade."], timeout_ms=200)
    from_ingest: list[float] = []
    from_exchange: list[float] = []
    deadline = time.monotonic() + seconds
    raw_path = os.environ.get("TAPLAT_RAW")
    raw = open(raw_path, "w") if raw_path else None  # noqa: SIM115
    while time.monotonic() < deadline:
        message = tap.receive()
        if message is None:
            continue
        now_us = time.time_ns() // 1000
        recv_us = message.data.get("recv_us") or message.data["recv_ms"] * 1000
        from_ingest.append((now_us - recv_us) / 1000)
        if raw is not None:
            raw.write(f"{recv_us} {now_us} {len(message.data['trades'])} {message.topic}\n")
        from_exchange.extend(now_us / 1000 - trade["ts_ms"] for trade in message.data["trades"])
    tap.close()
    print(
        json.dumps(
            {
                "tap_ms_from_ingest": {
                    "p50": percentile(from_ingest, 50),
                    "p90": percentile(from_ingest, 90),
                    "p99": percentile(from_ingest, 99),
                    "max": percentile(from_ingest, 100),
                },
                "tap_ms_from_exchange_ts": {
                    "p50": percentile(from_exchange, 50),
                    "p99": percentile(from_exchange, 99),
                },
                "messages": len(from_ingest),
            }
        )
    )


if __name__ == "__main__":
    main()
