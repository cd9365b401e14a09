"""heatup's own texts in the store: what went wrong, why a row is set aside.

They are clipped where they enter the store, whoever writes them: the columns that hold them
are ``ClippedText`` (``ClippedString`` for ``warmup_actions.error_text``, which holds no
more than ``TEXT_LIMIT`` characters), and the in-memory store clips them with ``clipped``.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Dialect, String, Text
from sqlalchemy.types import TypeDecorator

TEXT_LIMIT: Final = 500


def clipped(text: str | None) -> str | None:
    """``text`` as the store keeps it: its first ``TEXT_LIMIT`` characters."""
    return None if text is None else text[:TEXT_LIMIT]


class ClippedString(TypeDecorator[str]):
    """``String(length)``, clipped where text enters the store."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return clipped(value)


class ClippedText(ClippedString):
    """``Text``, clipped where text enters the store."""

    impl = Text
    cache_ok = True
