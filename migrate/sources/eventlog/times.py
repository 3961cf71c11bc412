"""Event times: RFC 3339 strings (any offset) and epoch numbers, normalised to RFC 3339 UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_CANON_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z")


def normalize_time(value: object) -> str | None:
    """RFC 3339 strings (any offset) and epoch seconds/milliseconds -> RFC 3339 UTC; None if unusable.

    Already-canonical UTC strings ('...Z') are kept as they are, sub-second digits included.
    """
    if type(value) is str and _CANON_TIME.fullmatch(value):
        return value
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if _CANON_TIME.fullmatch(text):
            return text
        try:
            number = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                return None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            return _fmt(dt.astimezone(UTC))
        return _from_epoch(number)
    if isinstance(value, (int, float)):
        return _from_epoch(float(value))
    return None


def _from_epoch(number: float) -> str | None:
    if number != number or abs(number) > 1e15:  # NaN or absurd
        return None
    if abs(number) >= 1e11:  # milliseconds (1e11 s would be the year 5138)
        number /= 1000.0
    try:
        return _fmt(datetime.fromtimestamp(number, UTC))
    except (OverflowError, OSError, ValueError):
        return None


def _fmt(dt: datetime) -> str:
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def time_key(ts: str) -> str:
    """A key that orders canonical RFC 3339 UTC strings of mixed sub-second precision."""
    body = ts[:-1]
    if len(body) == 19:
        return body + ".000000000"
    return body.ljust(29, "0")
