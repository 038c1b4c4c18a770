"""Exception hierarchy for hlstream.

HlstreamError
├── ConfigError      fatal at startup: bad setting, bad path, unknown coin (exit 78)
├── ProtocolError    a bad frame or payload: drop it, count it, continue
├── TransientError   network or REST trouble: retry with backoff
└── IntegrityError   continuing would corrupt output: stop
"""

from __future__ import annotations


class HlstreamError(Exception):
    """Root of every error hlstream raises on purpose."""


class ConfigError(HlstreamError):
    """A setting is invalid; the process cannot start."""


class ProtocolError(HlstreamError):
    """A frame or payload does not match the expected shape."""


class TransientError(HlstreamError):
    """A network or REST failure that a retry may cure."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IntegrityError(HlstreamError):
    """Continuing would write wrong data."""


EXIT_OK = 0
EXIT_CRASH = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78
