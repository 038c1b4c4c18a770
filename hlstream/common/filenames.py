"""`{coin}_{interval}_data.csv`: the coin lowercased and every byte outside `[a-z0-9._-]`
percent-encoded, so a name is always one path component and never `.`/`..`."""

from __future__ import annotations

from hlstream.common.errors import ConfigError

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
MAX_COIN_LEN = 64


def encode_coin(coin: str) -> str:
    """Lowercase and percent-encode a coin name for use in a filename."""
    if not coin or len(coin) > MAX_COIN_LEN:
        raise ConfigError(f"coin name {coin!r} must be 1 to {MAX_COIN_LEN} characters")
    out: list[str] = []
    for char in coin.lower():
        if char in _SAFE:
            out.append(char)
        else:
            out.extend(f"%{byte:02x}" for byte in char.encode("utf-8"))
    encoded = "".join(out)
    if encoded in {".", ".."}:
        encoded = encoded.replace(".", "%2e")
    return encoded


def csv_filename(coin: str, interval: str) -> str:
    """The CSV filename for a coin and interval, e.g. `btc_30m_data.csv`."""
    return f"{encode_coin(coin)}_{interval}_data.csv"


def check_unique_filenames(coins: list[str] | tuple[str, ...]) -> None:
    """Refuse coin lists where two coins would share one file (`kPEPE` and `KPEPE`)."""
    seen: dict[str, str] = {}
    for coin in coins:
        key = encode_coin(coin)
        if key in seen and seen[key] != coin:
            raise ConfigError(
                f"coins {seen[key]!r} and {coin!r} would both write to {key}_*_data.csv"
            )
        seen[key] = coin
