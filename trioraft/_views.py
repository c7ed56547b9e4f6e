"""Read-only views of private attributes, one line each instead of a property apiece."""

from __future__ import annotations

import operator
from typing import Any

__all__ = ["read_only"]


def read_only(attribute: str, doc: str) -> Any:
    """A property that reads ``attribute`` (dotted paths too: ``"_hs.term"``) of the
    instance, documented by ``doc``. Assign it to an annotated class attribute: the
    annotation gives its type (``term: int = read_only("_hs.term", "...")``)."""
    return property(operator.attrgetter(attribute), doc=doc)
