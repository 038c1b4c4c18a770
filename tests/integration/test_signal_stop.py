"""Ctrl-C twice and a double SIGTERM stop `hlstream run` and each stage alone cleanly: one
trial of each storm (tests/support/storm.py); the 20-trial storms are in tests/faults."""

from __future__ import annotations

import pytest

from tests.support.exchange import exchange_fixture
from tests.support.storm import pipeline_trial, run_trials, stage_trial

TRIALS = 1
# Beside other test files' pipelines (parallel workers) supervisord's one-second reaping of
# each stage in turn can pass 5 s; the serial storms in tests/faults hold the 5 s limit.
WITHIN_S = 10.0

exchange = exchange_fixture(
    coins=["BTC", "ETH"], rate_per_coin=8.0, seed=3, history_hours=0.1, scope="module"
)


def test_hlstream_run_survives_signal_storms(exchange, tmp_path):
    run_trials(
        lambda base, storm: pipeline_trial(exchange, base, storm, WITHIN_S), tmp_path, TRIALS
    )


@pytest.mark.parametrize("stage", ["ingest", "aggregator", "writer"])
def test_each_stage_alone_survives_signal_storms(exchange, tmp_path, stage):
    run_trials(
        lambda base, storm: stage_trial(exchange, base, stage, storm, WITHIN_S), tmp_path, TRIALS
    )
