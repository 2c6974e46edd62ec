"""A small JSON-over-HTTP client on http.client: one keep-alive connection per client object.

Blocking, so inside locust (gevent's monkey-patched sockets) it yields to other users while it
waits, and in the plain CLI it simply blocks."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# uvicorn closes idle keep-alive connections after 5 s: reconnect before reusing an older one.
IDLE_REUSE_S = 4.0


class TransportError(Exception):
    """No HTTP answer: connection refused or reset, timeout."""


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]
    retry_after_s: float | None = None  # the Retry-After header (seconds), when sent

    @property
    def unavailable(self) -> bool:
        """503: a store is away for now; the same call, retried later, completes or fails."""
        return self.status == 503

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> str:
        """The API's error code (`{"error": code, ...}`), or the status when the body has none."""
        code = self.body.get("error")
        return str(code) if code else f"http_{self.status}"

    def describe(self) -> str:
        detail = self.body.get("detail", "")
        return f"{self.status} {self.error}" + (f": {detail}" if detail else "")


class Api:
    def __init__(self, base_url: str, token: str = "", timeout_s: float = 10.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.token = token
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """The open connection (reused=True) or a new one."""
        if self._conn is not None and time.monotonic() - self._last_used < IDLE_REUSE_S:
            return self._conn, True
        self.close()
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        self._conn = kind(self.host, self.port, timeout=self.timeout_s)
        return self._conn, False

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One request. A reused connection that the server had closed is retried once on a new
        one: only replay-safe calls go through here (idempotency keys, idempotent confirms)."""
        sent = {"Accept": "application/json", **(headers or {})}
        bearer = self.token if token is None else token
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn, reused = self._connection()
            try:
                conn.request(method, path, body=payload, headers=sent)
                answer = conn.getresponse()
                raw = answer.read()
            except (http.client.HTTPException, OSError) as exc:
                self.close()
                stale = isinstance(
                    exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError
                )
                if reused and stale and attempt == 1:
                    continue
                raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
            self._last_used = time.monotonic()
            if answer.will_close:
                self.close()
            return Response(
                answer.status, decode_body(raw), seconds(answer.getheader("Retry-After"))
            )
        raise AssertionError("unreachable")

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None, **kw: Any) -> Response:
        return self.request("POST", path, {} if body is None else body, **kw)


def seconds(header: str | None) -> float | None:
    """Retry-After as delta-seconds (an HTTP date is not used by this API)."""
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None


def decode_body(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"error": "bad_json", "detail": raw[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"value": value}
