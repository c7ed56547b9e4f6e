"""State machines shared by the tests."""

from __future__ import annotations

from trioraft.testing import Counter

__all__ = ["Counter"]
