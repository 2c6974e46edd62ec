"""What an endpoint is and the rules of its URL and secrets (the settings' global endpoints and
the rooms' alike), and when a failed delivery is tried again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from rooms.errors import invalid

GLOBAL = 0  # the webhook id of a global endpoint (LIVE_WEBHOOK_URL): it is named by its url
MAX_URL_CHARS = 2000
MIN_SECRET_CHARS = 16
MAX_SECRET_CHARS = 200
MAX_SECRETS = 2  # the current one and, while the receiver moves to it, the previous one


@dataclass(frozen=True)
class Endpoint:
    webhook_id: int
    url: str
    secrets: tuple[str, ...]


def check_url(url: str) -> str:
    """`url` when it is an absolute http or https URL with a host; Invalid otherwise."""
    problem = invalid(
        f"url must be an http:// or https:// URL of at most {MAX_URL_CHARS} characters"
    )
    if not url or len(url) > MAX_URL_CHARS or not url.isascii() or not url.isprintable():
        raise problem
    if any(c.isspace() for c in url):
        raise problem
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        raise problem from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise problem
    return url


def redact(url: str) -> str:
    """`url` without what may be a credential (user and password, the query, the fragment:
    a receiver may take its token there), for logs and stored errors."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "(a malformed url)"
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    hidden = "?..." if parts.query or parts.fragment or parts.username or parts.password else ""
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")) + hidden


def check_urls(text: str) -> tuple[str, ...]:
    """Comma-separated URLs (LIVE_WEBHOOK_URL), each checked; none for an empty text."""
    found = tuple(part.strip() for part in text.split(",") if part.strip())
    for url in found:
        check_url(url)
    if len(set(found)) < len(found):
        raise invalid("a url is given twice")
    return found


def check_secrets(text: str) -> tuple[str, ...]:
    """One secret, or two separated by a comma while rotating (both sign every delivery)."""
    found = tuple(part.strip() for part in text.split(","))
    if not 1 <= len(found) <= MAX_SECRETS or not all(
        MIN_SECRET_CHARS <= len(secret) <= MAX_SECRET_CHARS
        and secret.isascii()
        and secret.isprintable()
        and not any(c.isspace() for c in secret)
        for secret in found
    ):
        raise invalid(
            f"secret must be one secret, or two separated by a comma, each of "
            f"{MIN_SECRET_CHARS}-{MAX_SECRET_CHARS} printable ASCII characters without spaces"
        )
    return found


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: the n-th retry waits a random time between half of
    and all of `first_s * 2**(n-1)`, capped at `max_s`; past `max_age_s` after its first try a
    delivery is dead-lettered (kept, listed, replayable)."""

    first_s: float = 1.0
    max_s: float = 3600.0
    max_age_s: float = 86400.0

    def delay_s(self, attempts: int, rng: random.Random | None = None) -> float:
        """How long to wait after the `attempts`-th failed attempt (1 or more)."""
        exponent = min(max(attempts, 1) - 1, 60)
        ceiling = min(self.max_s, self.first_s * 2.0**exponent)
        return (rng or random).uniform(ceiling / 2, ceiling)
