"""Any number of SIGINT/SIGTERM, in any order, ends in a clean stop: 20 trials of each storm
(tests/support/storm.py) against `hlstream run` and each stage alone, 160 processes in all."""

from __future__ import annotations

import os

import pytest

from tests.support.exchange import exchange_fixture
from tests.support.storm import pipeline_trial, run_trials, stage_trial

TRIALS = int(os.environ.get("STORM_TRIALS", "20"))

exchange = exchange_fixture(
    coins=["BTC", "ETH"], rate_per_coin=8.0, seed=3, history_hours=0.1, scope="module"
)


def test_hlstream_run_survives_signal_storms(exchange, tmp_path):
    run_trials(lambda base, storm: pipeline_trial(exchange, base, storm), tmp_path, TRIALS)


@pytest.mark.parametrize("stage", ["ingest", "aggregator", "writer"])
def test_each_stage_alone_survives_signal_storms(exchange, tmp_path, stage):
    run_trials(lambda base, storm: stage_trial(exchange, base, stage, storm), tmp_path, TRIALS)
