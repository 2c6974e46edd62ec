"""The API client's calls (loadtest/api.py: same `request`, `get`, `post`, same Response) on
geventhttpclient, the HTTP client of locust's FastHttpUser: a buyer's reserve and confirm cost
the load generator a fraction of what http.client costs. The calls are timed and reported by
the user (users.LiveUser.timed) under their own request types, not by locust's session."""

from __future__ import annotations

import json
from typing import Any

import gevent
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPParseError

from loadtest.api import Response, TransportError, decode_body, seconds


class FastApi:
    def __init__(self, client: HTTPClient, token: str = "") -> None:
        self.client = client  # e.g. FastHttpUser's pooled client for the service's host
        self.token = token

    def close(self) -> None:
        """Nothing: the connection belongs to the user's pool, closed with the user."""

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        sent = {"Accept": "application/json", **(headers or {})}
        bearer = self.token if token is None else token
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        payload = b""
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        try:
            answer = self.client.request(method, path, body=payload, headers=sent)
            try:
                raw = answer.read()
            finally:
                answer.release()
        except (OSError, HTTPParseError, gevent.Timeout) as exc:
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        retry_after = answer.get("retry-after")
        return Response(
            answer.status_code,
            decode_body(raw),
            seconds(retry_after if isinstance(retry_after, str) else None),
        )

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None, **kw: Any) -> Response:
        return self.request("POST", path, {} if body is None else body, **kw)
