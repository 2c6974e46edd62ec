"""Service settings, read once from `LIVE_*` environment variables."""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from flash_sales.webhooks.endpoints import (
    GLOBAL,
    Endpoint,
    RetryPolicy,
    check_secrets,
    check_urls,
)
from live.redis_client import cluster_nodes, is_cluster
from rooms.errors import Invalid


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. Field `x` is read from `LIVE_X`."""

    env: str = "development"  # "development" or "production"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    redis_url: str = ""  # empty: start an embedded redis-server under data_dir
    database_url: str = ""  # empty: start an embedded PostgreSQL under data_dir
    database_schema: str = "public"
    redis_prefix: str = "live:"
    data_dir: Path = Path(".live")
    jwt_secret: str = ""  # required in production; generated and kept in data_dir otherwise
    tick_ms: int = 50
    max_tick_ms: int = 200  # how far a big room may stretch its tick (never below tick_ms)
    lossy_per_tick: int = 20  # comments and purchases per frame (the most recent); rest counted
    lossy_per_second: float = 10.0  # comments and purchases a viewer gets a second; 0: all
    queue_high_water: int = 32  # frames queued for a viewer before lossy events are left out
    queue_hard_limit: int = 256  # frames queued before the slow-consumer grace period starts
    slow_grace_s: float = 5.0  # seconds past the hard limit before the viewer is closed (4429)
    allow_anonymous: bool = True
    allowed_origins: str = ""  # comma-separated WebSocket origins; empty: any
    max_message_bytes: int = 4096
    comment_max_chars: int = 500
    comments_per_10s: int = 5
    ended_room_ttl_s: int = 86400  # how long an ended room's live state stays in Redis
    db_pool_size: int = 10
    io_timeout_s: float = 5.0
    auction_hold_s: float = 600.0  # how long an auction's winner (or runner-up) has to confirm
    log_level: str = "info"
    webhook_url: str = ""  # comma-separated global endpoints of every room's events
    webhook_secret: str = ""  # one secret, or two comma-separated while rotating
    webhook_timeout_s: float = 5.0  # each delivery attempt
    webhook_retry_s: float = 1.0  # the first retry's wait; doubles (with jitter) per attempt
    webhook_retry_max_s: float = 3600.0  # the longest wait between two attempts
    webhook_max_age_s: float = 86400.0  # then a delivery is dead-lettered (replay: live webhooks)
    webhook_poll_ms: int = 200  # how often each process's dispatcher looks for work
    webhook_retention_s: float = 7 * 86400.0  # delivered events are kept this long
    # Rooms' endpoints may point at loopback, private or link-local addresses (receivers on a
    # laptop, tests). Off in every env: LIVE_ENV defaults to development, so "on unless
    # production" would open the SSRF hole on any server that forgot to set it.
    webhook_allow_private: bool = False
    drain_s: float = 3.0  # after SIGTERM: /readyz answers 503 this long before viewers are closed

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.allowed_origins.split(",") if o.strip())

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def webhook_endpoints(self) -> tuple[Endpoint, ...]:
        """The global endpoints, each with the global secrets."""
        urls = check_urls(self.webhook_url)
        secrets = check_secrets(self.webhook_secret) if urls else ()
        return tuple(Endpoint(GLOBAL, url, secrets) for url in urls)

    @property
    def webhook_retry(self) -> RetryPolicy:
        return RetryPolicy(self.webhook_retry_s, self.webhook_retry_max_s, self.webhook_max_age_s)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `LIVE_*` variables; `overrides` (command-line flags, already typed)
        win over the variable of the same setting, which is then not even read."""
        names = {field.name for field in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"no such setting: {', '.join(unknown)}")
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = source.get(f"LIVE_{field.name.upper()}")
            if raw is None or field.name in overrides:
                continue
            values[field.name] = _parse(field.name, field.type, raw)
        values.update(overrides)
        settings = replace(cls(), **values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.env not in ("development", "production"):
            raise SettingsError(f"LIVE_ENV must be 'development' or 'production', not {self.env!r}")
        if self.production and not self.jwt_secret:
            raise SettingsError("LIVE_JWT_SECRET must be set when LIVE_ENV=production")
        if self.production and len(self.jwt_secret) < 32:
            raise SettingsError("LIVE_JWT_SECRET must be at least 32 characters in production")
        if not 0 < self.port < 65536:
            raise SettingsError(f"LIVE_PORT must be between 1 and 65535, not {self.port}")
        if self.workers < 1:
            raise SettingsError(f"LIVE_WORKERS must be at least 1, not {self.workers}")
        if not 1 <= self.tick_ms <= 5000:
            raise SettingsError(f"LIVE_TICK_MS must be between 1 and 5000, not {self.tick_ms}")
        if not 1 <= self.max_tick_ms <= 5000:
            raise SettingsError(
                f"LIVE_MAX_TICK_MS must be between 1 and 5000, not {self.max_tick_ms}"
            )
        if not self.database_schema.isidentifier():
            raise SettingsError(
                f"LIVE_DATABASE_SCHEMA must be an identifier: {self.database_schema!r}"
            )
        if not 0 < self.queue_high_water < self.queue_hard_limit:
            raise SettingsError(
                "LIVE_QUEUE_HIGH_WATER must be positive and below LIVE_QUEUE_HARD_LIMIT"
            )
        if self.slow_grace_s <= 0:
            raise SettingsError("LIVE_SLOW_GRACE_S must be positive")
        if not (0 <= self.lossy_per_second < math.inf):
            raise SettingsError("LIVE_LOSSY_PER_SECOND must be 0 (no sampling) or positive")
        for name in (
            "max_message_bytes",
            "comment_max_chars",
            "comments_per_10s",
            "db_pool_size",
            "lossy_per_tick",
            "ended_room_ttl_s",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"LIVE_{name.upper()} must be positive")
        if self.io_timeout_s <= 0:
            raise SettingsError("LIVE_IO_TIMEOUT_S must be positive")
        if not (self.auction_hold_s > 0 and math.isfinite(self.auction_hold_s)):
            raise SettingsError("LIVE_AUCTION_HOLD_S must be positive")
        self._validate_webhooks()
        if not 0 <= self.drain_s <= MAX_DRAIN_S:
            raise SettingsError(f"LIVE_DRAIN_S must be between 0 and {MAX_DRAIN_S:g}")
        _check_url("LIVE_REDIS_URL", self.redis_url, REDIS_SCHEMES)
        _check_cluster_url(self.redis_url)
        _check_url("LIVE_DATABASE_URL", self.database_url, DATABASE_SCHEMES)

    def _validate_webhooks(self) -> None:
        try:
            check_urls(self.webhook_url)
        except Invalid as exc:
            raise SettingsError(f"LIVE_WEBHOOK_URL: {exc.detail}") from None
        if self.webhook_url.strip(", ") or self.webhook_secret:
            try:
                check_secrets(self.webhook_secret)
            except Invalid as exc:
                raise SettingsError(f"LIVE_WEBHOOK_SECRET: {exc.detail}") from None
        for name in (
            "webhook_timeout_s",
            "webhook_retry_s",
            "webhook_retry_max_s",
            "webhook_max_age_s",
            "webhook_poll_ms",
            "webhook_retention_s",
        ):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise SettingsError(f"LIVE_{name.upper()} must be positive")

    def resolved_jwt_secret(self) -> str:
        """The configured secret, or in development one generated once and kept in data_dir."""
        if self.jwt_secret:
            return self.jwt_secret
        if self.production:
            raise SettingsError("LIVE_JWT_SECRET must be set when LIVE_ENV=production")
        path = self.data_dir / "jwt_secret"
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return path.read_text().strip()
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48))
            return path.read_text().strip()
        except OSError as exc:
            raise SettingsError(
                f"LIVE_DATA_DIR {str(self.data_dir)!r} cannot hold the development secret: "
                f"{exc.strerror or exc}"
            ) from None


REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
MAX_DRAIN_S = 60.0
DATABASE_SCHEMES = ("postgresql", "postgres")


def _check_url(variable: str, url: str, schemes: tuple[str, ...]) -> None:
    """Empty (an embedded server) or a URL of one of `schemes`."""
    if not url:
        return
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise SettingsError(f"{variable} must start with one of {allowed}")


def _check_cluster_url(url: str) -> None:
    if is_cluster(url):
        try:
            cluster_nodes(url)
        except ValueError as exc:
            raise SettingsError(f"LIVE_REDIS_URL: {exc}") from None


def _parse(name: str, kind: Any, raw: str) -> Any:
    variable = f"LIVE_{name.upper()}"
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        if kind in (bool, "bool"):
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind in (Path, "Path"):
            return Path(raw)
    except ValueError:
        raise SettingsError(f"{variable} has an invalid value: {raw!r}") from None
    return raw
