"""A naive single-process streamer, the baseline the benchmark compares hlstream against.

What most public scripts do: websocket-client WebSocketApp, stdlib json, floats for
prices and volume, bars in a dict, one csv write per bar when a later trade arrives. No
dedupe (replayed trades count twice), no carry-forward, no fsync.

    python -m bench.naive WS_URL OUT_DIR COIN[,COIN...] INTERVAL_S
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
from datetime import UTC, datetime
from typing import Any

import websocket


def main() -> None:
    url, out_dir, coins_arg, interval_arg = sys.argv[1:5]
    coins = coins_arg.split(",")
    interval_ms = int(interval_arg) * 1000
    bars: dict[str, list[Any]] = {}
    files = {}
    for coin in coins:
        handle = open(os.path.join(out_dir, f"{coin.lower()}_naive.csv"), "w", newline="")  # noqa: SIM115
        writer = csv.writer(handle)
        writer.writerow(["Datetime", "Open", "High", "Low", "Close", "Volume"])
        files[coin] = (handle, writer)

    def flush(coin: str) -> None:
        start, o, h, low, c, v = bars[coin]
        stamp = datetime.fromtimestamp(start / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        handle, writer = files[coin]
        writer.writerow([stamp, o, h, low, c, v])
        handle.flush()

    def on_open(ws: websocket.WebSocketApp) -> None:
        for coin in coins:
            ws.send(
                json.dumps(
                    {"method": "subscribe", "subscription": {"type": "trades", "coin": coin}}
                )
            )

    def on_message(_ws: websocket.WebSocketApp, message: str) -> None:
        data = json.loads(message)
        if data.get("channel") != "trades":
            return
        for trade in data["data"]:
            coin, px, sz = trade["coin"], float(trade["px"]), float(trade["sz"])
            start = trade["time"] - trade["time"] % interval_ms
            bar = bars.get(coin)
            if bar is not None and start > bar[0]:
                flush(coin)
                bar = None
            if bar is None:
                bars[coin] = [start, px, px, px, px, sz]
            elif start == bar[0]:
                bar[2], bar[3], bar[4] = max(bar[2], px), min(bar[3], px), px
                bar[5] += sz

    app = websocket.WebSocketApp(url, on_open=on_open, on_message=on_message)
    signal.signal(signal.SIGTERM, lambda *_: app.close())
    app.run_forever(ping_interval=20)
    for handle, _writer in files.values():
        handle.close()


if __name__ == "__main__":
    main()
