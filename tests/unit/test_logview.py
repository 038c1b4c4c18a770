"""The front door reads the stages' log lines, text or JSON, the same way."""

from __future__ import annotations

from hlstream.logview import Echo, config_error, parse_line

TEXT = (
    "2026-12-04T20:19:44.561Z ERROR event=config_error service=ingest "
    "error=\"unknown coin 'BTCC': did you mean BTC?\" attempt=2"
)


def test_text_line_gives_level_event_and_fields():
    level, event, fields = parse_line(TEXT)
    assert (level, event) == ("ERROR", "config_error")
    assert fields == {
        "service": "ingest",
        "error": "unknown coin 'BTCC': did you mean BTC?",
        "attempt": "2",
    }


def test_json_line_reads_like_a_text_line():
    line = '{"ts": "t", "level": "ERROR", "event": "config_error", "error": "bad", "n": 3}'
    assert parse_line(line) == ("ERROR", "config_error", {"ts": "t", "error": "bad", "n": "3"})


def test_other_lines_give_nothing():
    assert parse_line("Traceback (most recent call last):") == ("", "", {})
    assert parse_line("{not json") == ("", "", {})


def test_config_error_is_the_last_one_logged():
    older = TEXT.replace("BTCC", "ETHH").replace("BTC?", "ETH?")
    assert config_error([older, "noise", TEXT]) == "unknown coin 'BTCC': did you mean BTC?"
    assert config_error(["noise"]) is None


def _line(level: str, event: str, **fields: str) -> str:
    pairs = " ".join(f'{key}="{value}"' for key, value in fields.items())
    return f"2026-12-04T20:00:00.000Z {level} event={event} service=x {pairs}"


REFUSED = "http://127.0.0.1:1/info unreachable: ConnectionError"


def test_echo_leaves_the_config_line_to_the_logs():
    assert Echo("run/logs").feed("ingest", _line("INFO", "config", settings="a=b"), 0.0) == []


def test_echo_says_offline_once_with_the_demo_hint_then_hides_retries():
    echo = Echo("run/logs")
    first = echo.feed("ingest", _line("WARNING", "meta_unavailable", error=REFUSED), 0.0)
    assert len(first) == 1 and REFUSED in first[0] and "`make demo`" in first[0]
    for event in ("rest_retry", "rest_failed", "backfill_failed"):
        assert echo.feed("writer", _line("ERROR", event, error=REFUSED), 5.0) == []
    assert echo.feed("ingest", _line("WARNING", "ws_reconnect", reason="connect_failed:X"), 6) == []
    assert echo.feed("aggregator", _line("WARNING", "feed_not_covered"), 7.0) == []


def test_echo_repeats_the_offline_note_only_every_ten_minutes():
    echo = Echo("run/logs")
    echo.feed("ingest", _line("WARNING", "meta_unavailable", error=REFUSED), 0.0)
    assert echo.feed("ingest", _line("WARNING", "meta_unavailable", error=REFUSED), 599.0) == []
    again = echo.feed("ingest", _line("WARNING", "meta_unavailable", error=REFUSED), 600.0)
    assert len(again) == 1 and "still cannot reach the exchange after 10 min" in again[0]


def test_echo_shows_everything_again_once_the_exchange_answers():
    echo = Echo("run/logs")
    echo.feed("ingest", _line("WARNING", "meta_unavailable", error=REFUSED), 0.0)
    back = echo.feed("ingest", _line("INFO", "coins_validated"), 9.0)
    assert back[0] == "hlstream: the exchange answers; streaming" and "coins_validated" in back[1]
    failed = _line("WARNING", "rest_retry", error=REFUSED)
    assert len(echo.feed("writer", failed, 10.0)) == 1, "a new outage is said again"


def test_echo_shows_retries_of_an_exchange_that_answers_badly():
    line = _line("WARNING", "rest_retry", error="server error HTTP 500")
    assert Echo("run/logs").feed("writer", line, 0.0) == [f"writer     | {line}"]
