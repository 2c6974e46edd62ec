"""The pure parts of webhooks: the signature a receiver verifies, the rules of endpoint URLs and
secrets, the retry schedule, the event ids, the settings."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flash_sales import outbox
from flash_sales.model import SaleState
from flash_sales.webhooks.addresses import is_public
from flash_sales.webhooks.endpoints import (
    RetryPolicy,
    check_secrets,
    check_url,
    check_urls,
    redact,
)
from flash_sales.webhooks.signature import TOLERANCE_S, sign, verify
from live.settings import Settings, SettingsError
from rooms.errors import Invalid

secret_text = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","),
    min_size=16,
    max_size=64,
)
NOW = 1_800_000_000


@given(body=st.binary(max_size=2000), secrets=st.lists(secret_text, min_size=1, max_size=2))
def test_a_signature_verifies_with_each_active_secret_and_nothing_else(
    body: bytes, secrets: list[str]
) -> None:
    header = sign(secrets, body, timestamp=NOW)
    assert header.startswith(f"t={NOW},") and header.count("v1=") == len(secrets)
    for secret in secrets:
        assert verify(header, body, [secret], now=NOW + 10)
        assert verify(header, body, ["an-old-one-0123456789", secret], now=NOW)
    assert not verify(header, body + b" ", secrets, now=NOW)
    assert not verify(header, body, ["another-secret-0123456789"], now=NOW)
    assert not verify(header, body, secrets, now=NOW + TOLERANCE_S + 1)  # too old: a replay
    assert not verify(header, body, secrets, now=NOW - TOLERANCE_S - 1)
    later = sign(secrets, body, timestamp=NOW + 1)
    assert later != header  # every attempt signs anew


@given(header=st.text(max_size=300), body=st.binary(max_size=50))
def test_any_header_is_verified_without_an_error(header: str, body: bytes) -> None:
    assert verify(header, body, ["a-secret-0123456789abc"], now=NOW) in (True, False)


def readme_verify() -> Callable[[str, bytes, str], bool]:
    """The `verify` the README shows receivers (its section on webhooks), run as printed."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text[text.index("## Webhooks") :]
    code = section[section.index("```python\n") + 10 : section.index("\n```\n")]
    space: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), space)  # our own README
    verify_readme: Callable[[str, bytes, str], bool] = space["verify"]
    return verify_readme


README_VERIFY = readme_verify()


@given(body=st.binary(max_size=500), secrets=st.lists(secret_text, min_size=1, max_size=2))
def test_the_readmes_few_lines_verify_what_the_service_signs(
    body: bytes, secrets: list[str]
) -> None:
    now = int(time.time())
    header = sign(secrets, body, timestamp=now)
    assert all(README_VERIFY(header, body, secret) for secret in secrets)
    assert not README_VERIFY(header, body + b"x", secrets[0])
    assert not README_VERIFY(header, body, "another-secret-0123456789")
    assert not README_VERIFY(sign(secrets, body, timestamp=now - 400), body, secrets[0])


@given(header=st.text(max_size=200))
def test_the_readmes_verify_refuses_any_other_header(header: str) -> None:
    assert README_VERIFY(header, b"{}", "a-secret-0123456789abc") is False


def test_the_readmes_verify_refuses_a_signature_that_is_not_ascii() -> None:
    """hmac.compare_digest raises TypeError for a str that is not ASCII: the README compares
    bytes, so that a malformed header is refused, never an error of the receiver's."""
    header = f"t={int(time.time())},v1=\u00e9{'0' * 63}"
    assert README_VERIFY(header, b"{}", "a-secret-0123456789abc") is False


def test_a_urls_credentials_are_left_out_where_it_is_shown() -> None:
    assert redact("https://u:p@erp.example.com:8443/a/b?token=x#f") == (
        "https://erp.example.com:8443/a/b?..."
    )
    assert redact("http://erp.example.com/hook") == "http://erp.example.com/hook"
    assert redact("http://[::1]:8080/x?k=1") == "http://[::1]:8080/x?..."


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("fd00::1", False),
        ("fe80::1%eth0", False),
        ("224.0.0.1", False),
        ("not an address", False),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


GOOD_URLS = [
    "http://127.0.0.1:8080/hooks",
    "https://erp.example.com/hooks/live?key=1",
    "https://[::1]:9000/x",
    "http://localhost/",
]
BAD_URLS = [
    "",
    "ftp://example.com/",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "http://",
    "https:///x",
    "example.com/x",
    "http://exa mple.com/",
    "http://example.com/\n",
    "http://example.com:70000/",
    "http://ex\u00e4mple.com/",
    "http://example.com/" + "x" * 2000,
]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_good_urls(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_urls(url: str) -> None:
    with pytest.raises(Invalid):
        check_url(url)


@given(st.text(max_size=80) | st.from_regex(r"\Ahttps?://[^/]{0,20}(/.{0,20})?\Z"))
def test_any_text_is_a_good_url_or_refused(url: str) -> None:
    try:
        checked = check_url(url)
    except Invalid:
        return
    assert checked.startswith(("http://", "https://")) and url.isascii()


def test_urls_and_secrets_of_the_settings() -> None:
    assert check_urls(" http://a/x , https://b ,") == ("http://a/x", "https://b")
    with pytest.raises(Invalid):
        check_urls("http://a/x,http://a/x")
    assert check_secrets("0123456789abcdef,fedcba9876543210") == (
        "0123456789abcdef",
        "fedcba9876543210",
    )
    for bad in ("", "short", "a" * 16 + "," * 2 + "b" * 16, "a" * 201, "0123456789 abcdef"):
        with pytest.raises(Invalid):
            check_secrets(bad)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"LIVE_WEBHOOK_URL": "ftp://x"}, "LIVE_WEBHOOK_URL"),
        ({"LIVE_WEBHOOK_URL": "http://x"}, "LIVE_WEBHOOK_SECRET"),  # a URL needs a secret
        ({"LIVE_WEBHOOK_SECRET": "short"}, "LIVE_WEBHOOK_SECRET"),
        ({"LIVE_WEBHOOK_TIMEOUT_S": "0"}, "LIVE_WEBHOOK_TIMEOUT_S"),
        ({"LIVE_WEBHOOK_MAX_AGE_S": "nan"}, "LIVE_WEBHOOK_MAX_AGE_S"),
        ({"LIVE_WEBHOOK_POLL_MS": "-1"}, "LIVE_WEBHOOK_POLL_MS"),
    ],
)
def test_webhook_settings_are_checked(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        Settings.from_env(env)


def test_global_endpoints_share_the_secrets() -> None:
    settings = Settings.from_env(
        {
            "LIVE_WEBHOOK_URL": "http://a/1,http://b/2",
            "LIVE_WEBHOOK_SECRET": "s" * 16 + "," + "t" * 16,
        }
    )
    assert [e.url for e in settings.webhook_endpoints] == ["http://a/1", "http://b/2"]
    assert {e.secrets for e in settings.webhook_endpoints} == {("s" * 16, "t" * 16)}
    assert Settings.from_env({}).webhook_endpoints == ()


def test_retries_back_off_exponentially_with_jitter_up_to_a_cap() -> None:
    policy = RetryPolicy(first_s=1.0, max_s=60.0, max_age_s=86400)
    rng = random.Random(14)
    for attempts in range(1, 40):
        ceiling = min(60.0, 2.0 ** (attempts - 1))
        delays = [policy.delay_s(attempts, rng) for _ in range(20)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempts, delays)
        assert len(set(delays)) > 1  # jitter: retries of many deliveries do not march together


def test_events_and_their_ids() -> None:
    row = uuid.uuid4()
    event = outbox.event_id(row)
    assert event == f"evt_{row.hex}" and outbox.event_uuid(event) == row
    for bad in ("", "evt_", "evt_" + "g" * 32, row.hex, "evt_" + row.hex + "0"):
        assert outbox.event_uuid(bad) is None
    moment = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    body = outbox.render(row, "order.created", moment, {"a": "ü"})
    assert body == (
        f'{{"id":"{event}","type":"order.created","created_at":{int(moment.timestamp() * 1000)},'
        '"data":{"a":"ü"}}'
    )
    moves = {
        ((SaleState.SCHEDULED,), SaleState.OPEN): ("sale.started", False),
        ((SaleState.SOLD_OUT,), SaleState.OPEN): ("sale.started", True),
        ((SaleState.OPEN,), SaleState.SOLD_OUT): ("sale.sold_out", False),
        ((SaleState.OPEN, SaleState.SOLD_OUT), SaleState.ENDED): ("sale.ended", False),
    }
    for (before, after), expected in moves.items():
        assert outbox.lifecycle_event(before, after) == expected
