"""Ingest's shell: the frames of one handler call go out as one trades message per coin, on
the tape in the order they came (a gap between them stays between them), each message's
tape span holding exactly its trades. Real tape files, a real ZeroMQ socket, no feed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import zmq

from hlstream.common.bus_io import Publisher, subscribe_socket
from hlstream.common.config import Settings
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import Gap, Trade, TradeBatch
from hlstream.common.tape.format import parse_record, segment_path
from hlstream.services.ingest import publisher
from hlstream.services.ingest.core.parse import parse_frame
from hlstream.services.ingest.events import Event, EventKind
from hlstream.services.ingest.publisher import TapeFirst, open_tape
from hlstream.services.ingest.shell import Ingest
from tests.support.wire import decode_message

T0 = 1_785_648_521_306


def frame_event(coin: str, ts_ms: int, *tids: int) -> Event:
    data = [
        {"coin": coin, "side": "B", "px": "10.5", "sz": "1", "time": ts_ms, "hash": "", "tid": t}
        for t in tids
    ]
    frame = parse_frame(json.dumps({"channel": "trades", "data": data}))
    return Event(EventKind.FRAME, 0, frame, T0 + 5, (T0 + 5) * 1000)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Ingest, zmq.Socket[Any]]]:
    settings = Settings(data_dir=tmp_path / "data", run_dir=tmp_path / "run", coins=("BTC", "ETH"))
    context = zmq.Context()
    ingest = Ingest(settings, StopFlag(), EventLog("test"), context)
    endpoint = f"ipc://{tmp_path / 'bus.sock'}"
    out = ingest.out = TapeFirst(
        open_tape(settings.data_dir, ingest.log), Publisher(context, endpoint), ingest.log
    )
    sub = subscribe_socket(context, endpoint, [""])
    out.bus.publish("warmup", Gap("BTC", 0, 0, "x"))  # until the SUB is connected
    while not sub.poll(20):
        out.bus.publish("warmup", Gap("BTC", 0, 0, "x"))
    while sub.poll(100):
        sub.recv_multipart()
    yield ingest, sub
    sub.close()
    out.bus.close()
    out.tape.close()
    context.term()


def received(sub: zmq.Socket[Any]) -> list[tuple[str, Any]]:
    out = []
    while sub.poll(200):
        topic, payload = sub.recv_multipart()
        out.append((topic.decode().rstrip("|"), decode_message(payload)[1]))
    return out


def tape_lines(data_dir: Path, coin: str, span: Any) -> list[str]:
    raw = segment_path(data_dir, coin, span.day).read_bytes()
    return raw[span.start : span.end].decode().splitlines()


def test_one_call_sends_one_message_per_coin_with_a_span_of_exactly_its_trades(
    rig: tuple[Ingest, zmq.Socket[Any]],
) -> None:
    ingest, sub = rig
    events = [
        frame_event("BTC", T0, 1, 2),
        frame_event("ETH", T0, 7),
        frame_event("BTC", T0 + 1, 3, 4),
        frame_event("BTC", T0 + 2, 5, 2),  # tid 2 at T0 + 2 is a new trade (other time)
        frame_event("BTC", T0, 1),  # a duplicate: dropped
    ]

    ingest._on_link(0, events, None)
    messages = received(sub)

    batches = {topic: message for topic, message in messages if isinstance(message, TradeBatch)}
    assert len(messages) == 2
    btc, eth = batches["trade.BTC"], batches["trade.ETH"]
    assert [(t.ts_ms, t.tid) for t in btc.trades] == [
        (T0, 1),
        (T0, 2),
        (T0 + 1, 3),
        (T0 + 1, 4),
        (T0 + 2, 5),
        (T0 + 2, 2),
    ]
    assert [t.tid for t in eth.trades] == [7]
    assert btc.recv_us == (T0 + 5) * 1000
    for batch in (btc, eth):
        assert batch.tape is not None
        lines = tape_lines(ingest.settings.data_dir, batch.coin, batch.tape)
        assert [parse_record(line) for line in lines] == list(batch.trades)
    assert ingest.counters.trades == 7 and ingest.counters.duplicates == 1


def test_a_gap_between_frames_splits_the_message_and_keeps_the_tape_order(
    rig: tuple[Ingest, zmq.Socket[Any]],
) -> None:
    ingest, sub = rig
    gap = Gap("BTC", T0, T0 + 1, "replay_no_overlap")

    out = ingest.out
    assert out is not None
    with ingest.lock:
        ingest._on_event(frame_event("BTC", T0, 1), out)
        out.gap(gap)
        ingest._on_event(frame_event("BTC", T0 + 1, 2), out)
        out.flush(ingest._covered_now)
    messages = received(sub)

    kinds = [(topic, type(message).__name__) for topic, message in messages]
    assert kinds == [("trade.BTC", "TradeBatch"), ("gap.BTC", "Gap"), ("trade.BTC", "TradeBatch")]
    tape = segment_path(ingest.settings.data_dir, "BTC", messages[0][1].tape.day).read_text()
    records = [parse_record(line) for line in tape.splitlines()[1:]]
    assert [type(r).__name__ for r in records] == ["Trade", "Gap", "Trade"]
    assert records[0].tid == 1 and records[2].tid == 2


def test_a_coin_past_the_cap_goes_out_in_several_messages(
    rig: tuple[Ingest, zmq.Socket[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest, sub = rig
    monkeypatch.setattr(publisher, "MAX_BATCH_TRADES", 4)

    ingest._on_link(0, [frame_event("BTC", T0 + i, 2 * i, 2 * i + 1) for i in range(3)], None)
    messages = received(sub)

    assert [len(message.trades) for _, message in messages] == [4, 2]
    first, second = (message.tape for _, message in messages)
    assert first.end == second.start


def test_a_restarted_ingest_bounds_the_replay_of_its_existing_segments(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", run_dir=tmp_path / "run", coins=("BTC",))
    with closing(open_tape(settings.data_dir, EventLog("test"))) as tape:
        tape.append([Trade("BTC", "buy", "10.5", "1", T0, tid, "") for tid in (1, 2)])
        (written,) = tape.commit()
    context = zmq.Context()
    ingest = Ingest(settings, StopFlag(), EventLog("test"), context)
    out = TapeFirst(
        open_tape(settings.data_dir, ingest.log), Publisher(context, "inproc://b"), ingest.log
    )
    try:
        ingest._seed_from_tape(out)
        assert out.ends == {("BTC", written.day): written.offset}
    finally:
        out.bus.close()
        out.tape.close()
        context.term()
