"""Timestamps as HubSpot writes them (`2024-05-01T12:00:00.000Z`) and reads them (ISO or ms)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime


def iso_ms(ms: int) -> str:
    """Epoch milliseconds to HubSpot's ISO-8601 form with milliseconds and `Z`."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def parse_ms(value: str) -> int | None:
    """Parse epoch ms (`"1714564800000"`), an ISO datetime, or an ISO date; None if unparseable."""
    text = value.strip()
    if not text:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def iso_date(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))
