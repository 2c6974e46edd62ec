"""What text the service stores: valid Unicode without NUL, which PostgreSQL text refuses."""

from __future__ import annotations


def storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")  # a lone surrogate (JSON "\ud800") cannot be encoded
    except UnicodeEncodeError:
        return False
    return True
