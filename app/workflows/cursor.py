"""The list's cursor: a position (created_at, key) the client hands back for the next page."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime

from app.config import KEY_PATTERN
from app.errors import InvalidInput


def encode_cursor(created_at: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{key}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    invalid = InvalidInput(
        "cursor is not one this service gave out; use next_cursor from the previous page",
        code="invalid_cursor",
    )
    try:
        text, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        created_at = datetime.fromisoformat(text)
        # Postgres' own range; a naive time or an out-of-range one never came from here.
        created_at.astimezone(UTC)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise invalid from exc
    if created_at.tzinfo is None or not re.fullmatch(KEY_PATTERN, key):
        raise invalid
    return created_at, key
