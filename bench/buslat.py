"""The bus's own latency floor on this machine: ingest's publisher to a tap process, with no
pipeline around them. `python -m bench.buslat [--bursts 300] [--out FILE]`.

The publisher sends what ingest sends in the tap bench (5 trades messages of 85 trades, one
per coin, 150 us apart, every 70-100 ms), each stamped `recv_us` just before it is encoded
and sent. A subscriber in its own process records, per message, the microseconds until
`recv_multipart` returned (`hop`) and until the payload was decoded as `hlstream.tap` does
(`decoded`). Whatever the pipeline adds comes on top of this floor.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import zmq

from bench.taplat import percentile
from hlstream.common.bus_io import Publisher
from hlstream.common.messages import TapeSpan, Trade, TradeBatch, trade_topic

COINS = ["BTC", "ETH", "SOL", "XRP", "DOGE"]
END_TOPIC = "trade.~end"


def subscribe(endpoint: str) -> None:
    """The subscriber process: print one JSON line of latencies when the end message comes."""
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"trade.")
    socket.connect(endpoint)
    print("ready", flush=True)
    hop: list[float] = []
    decoded: list[float] = []
    while True:
        topic, payload = socket.recv_multipart()
        received_us = time.time_ns() // 1000
        data = msgpack.unpackb(payload, raw=False)
        decoded_us = time.time_ns() // 1000
        if topic.decode() == END_TOPIC:
            break
        hop.append((received_us - data["recv_us"]) / 1000)
        decoded.append((decoded_us - data["recv_us"]) / 1000)
    summary = {
        name: {f"p{p}": percentile(values, p) for p in (50, 90, 99)}
        | {"max": percentile(values, 100)}
        for name, values in (("hop_ms", hop), ("decoded_ms", decoded))
    }
    print(json.dumps({**summary, "messages": len(hop)}), flush=True)


def _send_bursts(
    endpoint: str, bursts: int, trades: int, gap_us: int, subscriber: subprocess.Popen[str]
) -> str:
    """Publish the bursts, then the end message; the subscriber's output."""
    context = zmq.Context()
    publisher = Publisher(context, endpoint)
    try:
        time.sleep(0.5)  # the subscription reaches the publisher
        rng = random.Random(1)
        batches = {
            coin: tuple(
                Trade(
                    coin,
                    "buy",
                    "1000.3",
                    f"0.{rng.randrange(1, 99999):05d}",
                    1_764_500_000_000,
                    tid,
                    "0x" + "ab" * 32,
                )
                for tid in range(trades)
            )
            for coin in COINS
        }
        span = TapeSpan("2026-12-01", 0, 100)
        for _ in range(bursts):
            time.sleep(rng.uniform(0.070, 0.100))
            for coin in COINS:
                batch = TradeBatch(coin, 0, batches[coin], span, time.time_ns() // 1000)
                publisher.publish(trade_topic(coin), batch)
                time.sleep(gap_us / 1e6)
        publisher.publish(END_TOPIC, TradeBatch("~end", 0, (), span, 0))
        output, _ = subscriber.communicate(timeout=30)
        return output
    finally:
        publisher.close()
        context.term()


def publish(endpoint: str, bursts: int, trades: int, gap_us: int) -> dict[str, object]:
    subscriber = subprocess.Popen(
        [sys.executable, "-m", "bench.buslat", "--subscribe", endpoint],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert subscriber.stdout is not None
    try:
        subscriber.stdout.readline()  # ready
        output = _send_bursts(endpoint, bursts, trades, gap_us, subscriber)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait()
    result: dict[str, object] = json.loads(output.strip().splitlines()[-1])
    return {"bursts": bursts, "trades_per_message": trades, "gap_us": gap_us, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=300)
    parser.add_argument("--trades", type=int, default=85)
    parser.add_argument("--gap-us", type=int, default=150, help="between a burst's messages")
    parser.add_argument("--out", default="bench/results/buslat.json")
    parser.add_argument("--subscribe", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribe:
        subscribe(args.subscribe)
        return
    with tempfile.TemporaryDirectory() as tmp:
        endpoint = f"ipc://{Path(tmp) / 'buslat.sock'}"
        result = publish(endpoint, args.bursts, args.trades, args.gap_us)
    print(json.dumps(result))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
