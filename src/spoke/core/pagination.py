"""Cursor pagination: an opaque, url-safe token that encodes where the last page ended.

Cursors are keyset positions (never offsets), so a page is one index range scan however
deep the caller pages, and rows inserted meanwhile neither repeat nor vanish.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, Field

from spoke.core.errors import AppError

T = TypeVar("T")


class InvalidCursor(AppError):
    code = "invalid_cursor"
    status_code = 400
    title = "Invalid cursor"


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last page."
    )


def encode_cursor(position: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidCursor("The cursor is not one this API issued.") from exc
    if not isinstance(position, list) or len(position) != arity:
        raise InvalidCursor("The cursor is not one this API issued.")
    return position
