"""What a room accepts, without I/O: room ids, room settings and their blocked words, the
comment policy and the limits of moderation."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from rooms.errors import invalid
from rooms.keys import ROOM_ID
from rooms.text import storable

MAX_MUTE_S = 7 * 24 * 3600
MAX_SLOW_MODE_S = 3600
MAX_HOST_MESSAGE = 500
MAX_BLOCKED_WORDS = 200
MAX_BLOCKED_WORD_CHARS = 50
ROOM_SETTINGS = frozenset({"blocked_words", "allow_anonymous"})


@dataclass(frozen=True)
class CommentPolicy:
    """A comment's longest text, and how many comments a user may post per window."""

    max_chars: int
    per_window: int
    window_ms: int = 10_000


def check_room_id(room: str) -> None:
    if not ROOM_ID.fullmatch(room):  # match() would take a trailing newline ('$' does)
        raise invalid("room ids are 1-64 letters, digits, '-' or '_'")


def room_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Validated room settings, with defaults; unknown keys are refused."""
    unknown = sorted(set(settings) - ROOM_SETTINGS)
    if unknown:
        raise invalid(f"unknown room settings: {', '.join(unknown)}")
    words = settings.get("blocked_words", [])
    if not isinstance(words, list) or len(words) > MAX_BLOCKED_WORDS:
        raise invalid(f"blocked_words must be a list of at most {MAX_BLOCKED_WORDS} words")
    if not all(
        isinstance(w, str) and 0 < len(w.strip()) <= MAX_BLOCKED_WORD_CHARS and storable(w)
        for w in words
    ):
        raise invalid(
            f"each blocked word must be 1-{MAX_BLOCKED_WORD_CHARS} characters of valid text "
            "without NUL characters"
        )
    anonymous = settings.get("allow_anonymous", True)
    if not isinstance(anonymous, bool):
        raise invalid("allow_anonymous must be true or false")
    clean_words = sorted({w.strip().casefold() for w in words})
    return {"blocked_words": clean_words, "allow_anonymous": anonymous}


@functools.lru_cache(maxsize=256)
def _blocked_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """Whole words or phrases only, so blocking "ass" does not block "class"."""
    alternatives = "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def has_blocked_word(text: str, words: list[str]) -> bool:
    return bool(words) and _blocked_pattern(tuple(words)).search(text.casefold()) is not None
