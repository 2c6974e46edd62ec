"""The `Live-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
with one `v1=` per active secret (two while a secret is rotated). A receiver recomputes the HMAC
with its secret over the timestamp and the exact body bytes, accepts the request when any `v1`
matches, and refuses a timestamp older than the tolerance (5 minutes), so that a captured
request cannot be replayed later."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

HEADER = "Live-Signature"
TOLERANCE_S = 300


def sign(secrets: Sequence[str], body: bytes, timestamp: int | None = None) -> str:
    """The header's value for `body`, signed with every secret."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.".encode() + body
    macs = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets]
    return ",".join([f"t={t}", *(f"v1={mac}" for mac in macs)])


def verify(
    header: str,
    body: bytes,
    secrets: Sequence[str],
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether `header` signs `body` with one of `secrets` within `tolerance_s` of `now`."""
    timestamp, macs = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value.isascii():
            macs.append(value)
    current = time.time() if now is None else now
    if timestamp is None or abs(current - timestamp) > tolerance_s:
        return False
    signed = f"{timestamp}.".encode() + body
    expected = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets]
    return any(hmac.compare_digest(mac, e) for mac in macs for e in expected)
