"""The one fake-exchange fixture factory: `exchange = exchange_fixture(coins=[...], ...)` at the
top of a test module gives its tests a running FakeExchange (websocket + HTTP on 127.0.0.1)
that is stopped after them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest

from hlstream.sim.exchange import FakeExchange

Scope = Literal["function", "module"]


def exchange_fixture(
    *,
    scope: Scope = "function",
    paused: bool = False,
    prepare: Callable[[FakeExchange], None] | None = None,
    **settings: Any,
) -> Any:
    """A pytest fixture named `exchange`. `paused` stops live trades (history only);
    `prepare` runs on the exchange before it starts serving."""

    @pytest.fixture(scope=scope, name="exchange")
    def _exchange() -> Iterator[FakeExchange]:
        fake = FakeExchange(**settings)
        if paused:
            fake.pause_trades(True)
        if prepare is not None:
            prepare(fake)
        with fake:
            yield fake

    return _exchange
