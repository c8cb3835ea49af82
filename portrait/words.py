"""Counts in words for messages: ``1 pair``, ``2 pairs``."""

from __future__ import annotations

from typing import Optional


def counted(count: int, noun: str, plural: Optional[str] = None) -> str:
    """``count`` and ``noun``, plural unless the count is one (``plural``, else ``noun + "s"``):
    ``counted(1, "pair")`` is ``1 pair``, ``counted(3, "pair")`` is ``3 pairs``."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
