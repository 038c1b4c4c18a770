"""hlstream/metrics_io.py: the venue audit's per-file score in the Prometheus text format."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from hlstream.common.status import AuditScore, FileStatus
from hlstream.health import Report, build_report
from hlstream.metrics_io import families
from tests.unit.test_health import NOW, SETTINGS, processes, statuses

WEIRD = 'we"ird\\co\nin'  # a quote, a backslash and a newline: each must be escaped
COINS = ("PURR/USDC", "@107", "xyz:TSLA", WEIRD)


def report_with(coins: tuple[str, ...]) -> Report:
    files = {
        f"f{k}_1m_data.csv": FileStatus(
            coin, "1m", NOW - 120_000, AuditScore(10 + k, 9 + k, 1, k, 0)
        )
        for k, coin in enumerate(coins)
    }
    files["off_5s_data.csv"] = FileStatus("OFF", "5s", NOW - 10_000, None)
    base = statuses()
    writer = msgspec.structs.replace(base["writer"], files=files)
    return build_report(SETTINGS, True, processes(), {**base, "writer": writer}, NOW)


class _Fixed(Collector):
    def __init__(self, report: Report) -> None:
        self.report = report

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield from families(self.report)


def exposition(report: Report) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(report))
    return generate_latest(registry).decode()


def test_audit_metrics_are_per_file_with_coin_and_interval_labels() -> None:
    text = exposition(report_with(COINS))
    assert 'hlstream_rows_audited_total{coin="PURR/USDC",interval="1m"} 10.0' in text
    assert 'hlstream_rows_mismatched_total{coin="@107",interval="1m"} 1.0' in text
    assert 'hlstream_audit_pending{coin="xyz:TSLA",interval="1m"} 2.0' in text
    assert 'coin="we\\"ird\\\\co\\nin"' in text  # escaped, one line per sample
    assert "# TYPE hlstream_rows_audited_total counter" in text
    audit_lines = [line for line in text.splitlines() if "audit" in line or "mismatch" in line]
    assert not [line for line in audit_lines if 'coin="OFF"' in line]  # no score, no sample


def test_every_label_value_reads_back_as_the_coin_and_each_name_is_one_family() -> None:
    text = exposition(report_with(COINS))
    parsed = list(text_string_to_metric_families(text))
    names = [family.name for family in parsed]
    assert len(names) == len(set(names))
    audited = {
        sample.labels["coin"]: sample.value
        for family in parsed
        if family.name == "hlstream_rows_audited"
        for sample in family.samples
        if sample.name == "hlstream_rows_audited_total"
    }
    assert audited == {coin: 10.0 + k for k, coin in enumerate(COINS)}
    pending = {
        sample.labels["coin"]: sample.value
        for family in parsed
        if family.name == "hlstream_audit_pending"
        for sample in family.samples
    }
    assert pending == {coin: float(k) for k, coin in enumerate(COINS)}
