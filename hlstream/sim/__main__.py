"""`python -m hlstream.sim`: run a FakeExchange on 127.0.0.1 until SIGTERM or SIGINT.
Prints one line `ws_url=... info_url=...` once both servers listen, then exits 0 on signal."""

from __future__ import annotations

import argparse
import sys

from hlstream.common.config import DEFAULT_COINS
from hlstream.common.lifecycle_io import StopFlag, ignore_stop_signals
from hlstream.sim.exchange import FakeExchange

STOP_POLL_S = 0.5  # the flag's pipe wakes the wait at once; this only bounds it


def main(argv: list[str] | None = None) -> int:
    """Run the fake exchange until a signal arrives."""
    parser = argparse.ArgumentParser(prog="python -m hlstream.sim", description=__doc__)
    parser.add_argument("--coins", default=",".join(DEFAULT_COINS), help="comma list of perps")
    parser.add_argument("--rate", type=float, default=4.0, help="trades per second per coin")
    parser.add_argument("--ws-port", type=int, default=0, help="websocket port (0: ephemeral)")
    parser.add_argument("--http-port", type=int, default=0, help="/info port (0: ephemeral)")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    args = parser.parse_args(argv)
    coins = [coin.strip() for coin in args.coins.split(",") if coin.strip()]
    done = StopFlag().install()
    exchange = FakeExchange(
        coins=coins,
        rate_per_coin=args.rate,
        seed=args.seed,
        ws_port=args.ws_port,
        http_port=args.http_port,
    )
    exchange.start()
    try:
        print(f"ws_url={exchange.ws_url} info_url={exchange.info_url}", flush=True)
        while not done.wait(STOP_POLL_S):
            pass
    finally:
        exchange.stop()
        ignore_stop_signals()
    return 0


if __name__ == "__main__":
    sys.exit(main())
