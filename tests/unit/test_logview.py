"""The front door reads the stages' log lines, text or JSON, the same way."""

from __future__ import annotations

from hlstream.logview import config_error, parse_line

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
