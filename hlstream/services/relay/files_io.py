"""The relay's files in the run dir: its progress (saved only after the sinks acked) and its
heartbeat; and how far it lags the tape. The bar files are read by bars_io."""

from __future__ import annotations

from pathlib import Path

import msgspec

from hlstream.common.config import Settings
from hlstream.common.tape.format import segment_path
from hlstream.common.tape.readers_io import segment_days
from hlstream.services.relay.core import RelayProgress, RelayStatus

PROGRESS_FILE = "relay-progress.json"
STATUS_FILE = "relay-status.json"

_PROGRESS = msgspec.json.Decoder(RelayProgress)


def status_path(run_dir: Path) -> Path:
    return run_dir / STATUS_FILE


def read_relay_status(run_dir: Path) -> RelayStatus | None:
    """The relay's last heartbeat, None when missing or unreadable."""
    try:
        return msgspec.json.decode(status_path(run_dir).read_bytes(), type=RelayStatus)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def load_progress(run_dir: Path) -> RelayProgress:
    try:
        return _PROGRESS.decode((run_dir / PROGRESS_FILE).read_bytes())
    except FileNotFoundError:
        return RelayProgress()


def lag_bytes(settings: Settings, progress: RelayProgress) -> int:
    """Tape bytes of the newest two days per coin not yet acked by NATS."""
    lag = 0
    for coin in settings.coins:
        days = segment_days(settings.data_dir, coin)
        saved = progress.tape.get(coin, {})
        for day in days[-2:]:
            try:
                size = segment_path(settings.data_dir, coin, day).stat().st_size
            except OSError:
                continue
            lag += max(0, size - saved.get(day, 0)) if saved.get(day) else size
    return lag
