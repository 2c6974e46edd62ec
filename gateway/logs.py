"""No token in any log: a logging filter that masks JWTs, `token=` query values and
`Authorization` values in every record it sees, and the uvicorn log configuration that puts it on
uvicorn's access and error loggers and on the service's own (`live.*`).

uvicorn writes the request line with its query string to the access log, and the WebSocket's
path (`/ws/rooms/R?token=...`) to the error log when a connection opens; both are masked here.
The configuration is a dict (uvicorn's `log_config`), so worker processes apply it too."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from typing import Any

from uvicorn.config import LOGGING_CONFIG

REDACTED = "[redacted]"

_PATTERNS = (
    # a query or form parameter that carries a token: ?token=..., &access_token=...
    re.compile(r"(?i)((?:^|[?&;\s\"'])(?:access_|id_|refresh_)?token=)[^&;\s\"']+"),
    # an Authorization header's value, in any rendering: "authorization: x", ('authorization', 'x')
    re.compile(r"(?i)(authorization['\"]?\s*[:=,]\s*(?:b?['\"])?)[^'\"\r\n]+"),
    # a bearer credential anywhere
    re.compile(r"(?i)(bearer\s+)[\w\-.~+/=]+"),
    # a JWT anywhere (header.payload.signature, the first two base64url JSON objects)
    re.compile(r"()eyJ[\w-]*\.eyJ[\w-]*\.[\w-]*"),
)


def redact(text: str) -> str:
    """`text` with every token-like secret replaced by REDACTED."""
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\g<1>{REDACTED}", text)
    return text


def _redacted(value: object) -> object:
    """A log argument without secrets: a string masked; any other object (headers, a scope)
    replaced by its masked text only when its text held a secret, so numbers stay numbers."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)
    masked = redact(text)
    return value if masked == text else masked


class RedactSecrets(logging.Filter):
    """Masks secrets in a record's message, arguments and traceback text, in place, so every
    handler after it (and every formatter, uvicorn's access formatter included, which reads
    the request line from the arguments) sees the masked values. Never drops a record."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _redacted(arg) for key, arg in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's default logging, with RedactSecrets on its handlers and loggers, and the
    service's `live.*` loggers written through the same (filtered) handler at `level`."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": f"{__name__}.RedactSecrets"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        config["loggers"][name]["filters"] = ["redact"]
    config["loggers"]["live"] = {
        "handlers": ["default"],
        "filters": ["redact"],
        "level": level.upper(),
    }
    return config
