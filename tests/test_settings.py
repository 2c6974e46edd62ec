from pathlib import Path

import pytest

from live.services import gateway_config
from live.settings import Settings, SettingsError


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings.port == 8000
    assert settings.workers == 1
    assert settings.redis_url == ""
    assert settings.data_dir == Path(".live")
    assert settings.tick_ms == 50
    assert not settings.production


def test_reads_prefixed_variables_with_types() -> None:
    settings = Settings.from_env(
        {
            "LIVE_PORT": "9001",
            "LIVE_WORKERS": "3",
            "LIVE_ALLOW_ANONYMOUS": "off",
            "LIVE_IO_TIMEOUT_S": "2.5",
            "LIVE_DATA_DIR": "/tmp/x",
            "LIVE_REDIS_URL": "redis://h:1/0",
            "UNRELATED": "1",
        }
    )
    assert (settings.port, settings.workers, settings.allow_anonymous) == (9001, 3, False)
    assert settings.io_timeout_s == 2.5
    assert settings.data_dir == Path("/tmp/x")
    assert settings.redis_url == "redis://h:1/0"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LIVE_PORT": "eighty"}, "LIVE_PORT has an invalid value"),
        ({"LIVE_PORT": "70000"}, "LIVE_PORT must be between"),
        ({"LIVE_WORKERS": "0"}, "LIVE_WORKERS must be at least 1"),
        ({"LIVE_ALLOW_ANONYMOUS": "maybe"}, "LIVE_ALLOW_ANONYMOUS has an invalid value"),
        ({"LIVE_ENV": "staging"}, "LIVE_ENV must be"),
        ({"LIVE_DATABASE_SCHEMA": "a;drop"}, "LIVE_DATABASE_SCHEMA must be an identifier"),
        ({"LIVE_MAX_TICK_MS": "0"}, "LIVE_MAX_TICK_MS must be between 1 and 5000"),
        ({"LIVE_DRAIN_S": "61"}, "LIVE_DRAIN_S must be between 0 and 60"),
        ({"LIVE_DRAIN_S": "-1"}, "LIVE_DRAIN_S must be between 0 and 60"),
    ],
)
def test_bad_values_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_production_requires_a_secret() -> None:
    with pytest.raises(SettingsError, match="LIVE_JWT_SECRET must be set"):
        Settings.from_env({"LIVE_ENV": "production"})
    with pytest.raises(SettingsError, match="at least 32"):
        Settings.from_env({"LIVE_ENV": "production", "LIVE_JWT_SECRET": "short"})
    ok = Settings.from_env({"LIVE_ENV": "production", "LIVE_JWT_SECRET": "s" * 32})
    assert ok.resolved_jwt_secret() == "s" * 32


def test_development_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = Settings.from_env({"LIVE_DATA_DIR": str(tmp_path)})
    first = settings.resolved_jwt_secret()
    assert len(first) >= 32
    assert Settings.from_env({"LIVE_DATA_DIR": str(tmp_path)}).resolved_jwt_secret() == first
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0


def test_overrides_beat_the_variables_of_the_same_settings() -> None:
    environ = {"LIVE_HOST": "0.0.0.0", "LIVE_PORT": "not-a-port", "LIVE_WORKERS": "3"}
    settings = Settings.from_env(environ, host="127.0.0.1", port=9000)
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 9000, 3)
    with pytest.raises(SettingsError, match="LIVE_PORT must be between"):
        Settings.from_env(environ, port=0)
    with pytest.raises(TypeError, match="no such setting: colour"):
        Settings.from_env({}, colour="blue")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LIVE_REDIS_URL": "127.0.0.1:6379"}, "LIVE_REDIS_URL must start with one of redis://"),
        ({"LIVE_DATABASE_URL": "mysql://h/db"}, "LIVE_DATABASE_URL must start with"),
        ({"LIVE_REDIS_URL": "redis+cluster://h1:1,h2"}, "a cluster node must be host:port"),
        ({"LIVE_REDIS_URL": "redis+cluster://h1:1/2"}, "a Redis Cluster has only database 0"),
    ],
)
def test_urls_need_a_known_scheme(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)
    assert Settings.from_env({"LIVE_REDIS_URL": "rediss://h:1/0"}).redis_url == "rediss://h:1/0"


def test_an_unusable_data_dir_is_a_settings_error() -> None:
    settings = Settings.from_env({"LIVE_DATA_DIR": "/proc/no/such/dir"})
    with pytest.raises(SettingsError, match="cannot hold the development secret"):
        settings.resolved_jwt_secret()


def test_the_gateway_gets_the_lossy_rate() -> None:
    assert gateway_config(Settings.from_env({})).lossy_per_s == 10.0
    sampled = Settings.from_env({"LIVE_LOSSY_PER_SECOND": "2.5"})
    assert gateway_config(sampled).lossy_per_s == 2.5
    assert gateway_config(Settings.from_env({"LIVE_LOSSY_PER_SECOND": "0"})).lossy_per_s == 0
    with pytest.raises(SettingsError, match="LIVE_LOSSY_PER_SECOND"):
        Settings.from_env({"LIVE_LOSSY_PER_SECOND": "-1"})
