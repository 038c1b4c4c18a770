"""Exception hierarchy for hlstream: what each error means is what its handler does."""

from __future__ import annotations


class HlstreamError(Exception):
    """Root of every error hlstream raises on purpose."""


class ConfigError(HlstreamError):
    """A setting, path or coin is invalid; the process cannot start (exit 78)."""


class ProtocolError(HlstreamError):
    """A frame or payload does not match the expected shape: drop it, count it, continue."""


class TransientError(HlstreamError):
    """A network or REST failure that a retry with backoff may cure."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IntegrityError(HlstreamError):
    """Continuing would write wrong data: stop."""


EXIT_OK = 0
EXIT_CRASH = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78
