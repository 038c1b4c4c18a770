"""The relay's pure core: subject tokens, message ids, the publish plan, bar rows, SQL."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlstream.common.config import describe, load_settings, redact_url
from hlstream.common.errors import ConfigError
from hlstream.common.messages import Gap, Trade
from hlstream.common.sinks import SinkSecrets
from hlstream.services.relay.bars import parse_bar_lines
from hlstream.services.relay.core import (
    UPSERT_SQL,
    JsBar,
    JsTrade,
    bar_msg_id,
    bar_subject,
    encode_token,
    plan_records,
    read_back_start_ms,
    trade_payload,
    trade_subject,
    upsert_params,
)
from hlstream.tap_nats import decode_token  # the tap decodes what the relay encodes

T1 = Trade("BTC", "buy", "63471.0", "0.00155", 1_700_000_000_000, 42, "0xab")
T2 = Trade("BTC", "sell", "63470.5", "0.1", 1_700_000_000_001, 43, "0xcd")


@pytest.mark.parametrize(
    ("coin", "token"),
    [("BTC", "BTC"), ("kPEPE", "kPEPE"), ("PURR/USDC", "PURR%2FUSDC"), ("@107", "%40107"),
     ("xyz:TSLA", "xyz%3ATSLA"), ("A.B", "A%2EB"), ("50%", "50%25"), ("a*>", "a%2A%3E")],
)  # fmt: skip
def test_unsafe_coins_are_percent_encoded_as_one_subject_token(coin, token):
    assert encode_token(coin) == token
    assert decode_token(token) == coin


@given(st.text(min_size=1, max_size=40))
def test_subject_tokens_round_trip_and_are_one_safe_token(coin):
    token = encode_token(coin)
    assert decode_token(token) == coin
    assert not set(token) & set(". *>\t\r\n")
    assert decode_token(trade_subject(coin).rsplit(".", 1)[1]) == coin  # the last token


def test_a_token_encode_would_not_produce_is_refused():
    for token in ("%2f", "%4", "%ZZ", "BTC%41"):
        with pytest.raises(ValueError):
            decode_token(token)


def test_bar_subject_puts_the_interval_before_the_coin():
    assert bar_subject("1m", "@107") == "hl.bars.1m.%40107"
    assert bar_msg_id("1m", "xyz:TSLA", 60_000, 2) == "1m:xyz:TSLA:60000:2"


def test_plan_skips_what_the_stream_holds_and_keeps_order():
    gap = Gap("BTC", 1, 2, "reconnect")
    out, skipped = plan_records([T1, gap, T2], {"BTC:1700000000000:42"}, recv_us=5)
    assert skipped == 1
    assert [m.msg_id for m in out] == ["gap:BTC:1:2", "BTC:1700000000001:43"]
    assert [m.subject for m in out] == ["hl.gaps.BTC", "hl.trades.BTC"]
    trade = msgspec.msgpack.decode(out[1].payload, type=JsTrade)
    assert (trade.price, trade.size, trade.tid, trade.recv_us) == ("63470.5", "0.1", 43, 5)


def test_a_trade_payload_carries_users_only_when_the_trade_has_them():
    users = ("0x" + "a" * 40, "0x" + "b" * 40)

    plain = msgspec.msgpack.decode(trade_payload(T1, 5))
    with_users = msgspec.msgpack.decode(trade_payload(msgspec.structs.replace(T1, users=users), 5))

    assert "users" not in plain
    assert with_users == {**plain, "users": list(users)}


def test_plan_with_nothing_in_the_stream_publishes_everything():
    out, skipped = plan_records([T1, T2], set(), recv_us=0)
    assert (len(out), skipped) == (2, 0)


def test_read_back_starts_a_margin_before_the_oldest_resume_point():
    assert read_back_start_ms([2_000_000, 1_000_000]) == 1_000_000 - 300_000
    assert read_back_start_ms([]) == 0


def test_bar_lines_skip_the_header_and_a_torn_tail():
    data = b"Datetime,Open,High,Low,Close,Volume\n2024-01-01 00:00:05,1.0,2.0,0.5,1.5,0.25\n2024-0"
    rows = list(parse_bar_lines(data))
    assert len(rows) == 1
    row, end = rows[0]
    assert (row.start_ms, row.open, row.volume) == (1_704_067_205_000, "1.0", "0.25")
    assert end == data.rindex(b"2024-0")


def test_upsert_keeps_decimals_as_text_and_updates_only_on_a_difference():
    bar = JsBar("BTC", "5s", 5_000, "1.10", "2", "0.5", "1.5", "0.00000001", None, True, 0)
    assert upsert_params(bar) == (
        "BTC",
        "5s",
        5_000,
        "1.10",
        "2",
        "0.5",
        "1.5",
        "0.00000001",
        None,
        True,
        0,
    )
    assert "IS DISTINCT FROM" in UPSERT_SQL
    assert "revision = GREATEST(b.revision + 1, EXCLUDED.revision)" in UPSERT_SQL
    assert "EXCLUDED.exact OR NOT b.exact" in UPSERT_SQL


def test_sink_secrets_come_from_files_or_env_and_are_never_described(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    env = {
        "HLSTREAM_NATS_URL": "nats://relay:inline-pw@127.0.0.1:4222",
        "HLSTREAM_NATS_PASSWORD_FILE": str(secret),
        "HLSTREAM_POSTGRES_DSN": "host=db user=h password=dsn-pw",
        "HLSTREAM_POSTGRES_PASSWORD": "env-pw",
    }
    settings = load_settings(environ=env)
    from hlstream.common.sinks import sink_secrets

    secrets = sink_secrets(settings, env)
    assert (secrets.nats_password, secrets.postgres_password) == ("hunter2", "env-pw")
    text = describe(settings) + repr(secrets) + repr(SinkSecrets("a", "b", "c"))
    for leaked in ("hunter2", "env-pw", "inline-pw", "dsn-pw"):
        assert leaked not in text
    assert redact_url("nats://a:b@h:1") == "nats://a:***@h:1"


def test_bad_sink_settings_are_config_errors():
    for env in (
        {"HLSTREAM_NATS_URL": "http://x:1"},
        {"HLSTREAM_NATS_REPLICAS": "7"},
        {"HLSTREAM_NATS_PASSWORD_FILE": "/nonexistent/pw"},
    ):
        with pytest.raises(ConfigError):
            load_settings(environ=env)
