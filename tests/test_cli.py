"""`live` as a user runs it: real subprocesses, real servers, HTTP over loopback."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from gateway import auth
from live.embedded import free_port
from rooms.actors import Role

LIVE = [sys.executable, "-m", "live.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    env.update(extra)
    return env


@contextmanager
def serving(*args: str, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """Run `live serve` until /readyz answers 200; yields the process, its URL and its banner."""
    port = free_port()
    process = subprocess.Popen(
        [*LIVE, "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        banner = process.stdout.readline() if process.stdout else ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, f"live serve exited: {banner}"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("live serve never became ready")
        yield process, url, banner
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        if process.stdout:
            process.stdout.close()


def _database_url(banner: str) -> str:
    match = re.search(r"postgres (postgresql://\S+),", banner)
    assert match, banner
    return match[1]


async def _execute(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def test_serve_embedded_survives_kill_and_stops_cleanly(tmp_path: Path) -> None:
    env = _env(LIVE_DATA_DIR=str(tmp_path))
    with serving(env=env) as (process, _, banner):
        database = _database_url(banner)
        await _execute(database, "INSERT INTO rooms (id, title, host_id) VALUES ('kept', 'K', 'h')")
        process.kill()  # no chance to clean up: the servers are orphaned with their data
        process.wait(timeout=10)

    with serving(env=env) as (process, _, banner):
        rows = await _execute(_database_url(banner), "SELECT id FROM rooms")
        assert [r["id"] for r in rows] == ["kept"]
        redis_pid = int((tmp_path / "redis" / "redis.pid").read_text())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(redis_pid, 0)

    with serving(env=env) as (_, _, banner):
        rows = await _execute(_database_url(banner), "SELECT id FROM rooms")
        assert [r["id"] for r in rows] == ["kept"]


def test_serve_with_external_servers_and_two_workers(
    tmp_path: Path, redis_url: str, database_url: str, db_schema: str, namespace: str
) -> None:
    env = _env(
        LIVE_DATA_DIR=str(tmp_path),
        LIVE_REDIS_URL=redis_url,
        LIVE_DATABASE_URL=database_url,
        LIVE_DATABASE_SCHEMA=db_schema,
        LIVE_REDIS_PREFIX=namespace,
    )
    with serving("--workers", "2", env=env) as (_, url, banner):
        assert "workers 2" in banner
        for _ in range(10):
            response = httpx.get(f"{url}/readyz", timeout=5)
            assert response.json()["checks"] == {
                "redis": "ok",
                "postgres": "ok",
                "migrations": "ok",
                "serving": "ok",
            }
        metrics = httpx.get(f"{url}/metrics", timeout=5)
        assert metrics.status_code == 200
    assert not (tmp_path / "postgres").exists()  # nothing embedded was started


def test_second_serve_on_one_data_dir_is_refused(tmp_path: Path) -> None:
    env = _env(LIVE_DATA_DIR=str(tmp_path))
    with serving(env=env):
        second = subprocess.run(
            [*LIVE, "serve", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 1
    assert second.stderr.strip().startswith("live: error: data dir")
    assert "is in use by live serve" in second.stderr


def test_unreachable_server_is_one_line_and_non_zero(tmp_path: Path) -> None:
    env = _env(
        LIVE_DATA_DIR=str(tmp_path),
        LIVE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        LIVE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        LIVE_IO_TIMEOUT_S="2",
    )
    result = subprocess.run([*LIVE, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("live: error: Redis at redis://127.0.0.1:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--port", "eighty"], "argument --port: invalid int value"),
        (["token", "--role", "king", "--room", "r", "--sub", "u"], "argument --role"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_flags_are_one_line_errors(args: list[str], message: str) -> None:
    result = subprocess.run([*LIVE, *args], env=_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_token_is_signed_with_the_configured_secret(tmp_path: Path) -> None:
    secret = "x" * 40
    result = subprocess.run(
        [*LIVE, "token", "--role", "host", "--room", "r1", "--sub", "alice", "--ttl", "60"],
        env=_env(LIVE_JWT_SECRET=secret, LIVE_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    claims = auth.verify(secret, result.stdout.strip())
    assert (claims.sub, claims.role, claims.room) == ("alice", Role.HOST, "r1")
    assert claims.exp - time.time() <= 60


def test_production_without_secret_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [*LIVE, "serve"],
        env=_env(LIVE_ENV="production", LIVE_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip() == "live: error: LIVE_JWT_SECRET must be set when LIVE_ENV=production"
    )


def test_migrate_and_version(tmp_path: Path, database_url: str, db_schema: str) -> None:
    env = _env(
        LIVE_DATABASE_URL=database_url, LIVE_DATABASE_SCHEMA=db_schema, LIVE_REDIS_URL="redis://x"
    )
    first = subprocess.run([*LIVE, "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "0001_initial" in first.stdout
    second = subprocess.run([*LIVE, "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert "nothing to apply" in second.stdout
    version = subprocess.run(
        [*LIVE, "version"], env=env, capture_output=True, text=True, timeout=30
    )
    assert version.stdout.strip().startswith("live 0.")


def test_serve_demo_seeds_a_room_and_prints_links(
    tmp_path: Path, redis_url: str, database_url: str, db_schema: str, namespace: str
) -> None:
    env = _env(
        LIVE_DATA_DIR=str(tmp_path),
        LIVE_REDIS_URL=redis_url,
        LIVE_DATABASE_URL=database_url,
        LIVE_DATABASE_SCHEMA=db_schema,
        LIVE_REDIS_PREFIX=namespace,
    )
    with serving("--demo", env=env) as (process, url, _):
        assert process.stdout is not None
        links = [process.stdout.readline().strip() for _ in range(5)]
        host_link = links[0].removeprefix("host console: ")
        assert host_link.startswith(f"{url}/host/demo#token=")
        assert [line.split(":")[0] for line in links[1:]] == [
            "viewer alice",
            "viewer bob",
            "viewer carol",
            "anonymous viewer",
        ]
        room = httpx.get(f"{url}/api/rooms/demo", timeout=5).json()
        assert room["pinned"]["title"] == "Stoneware mug"
        token = host_link.split("#token=")[1]
        products = httpx.get(
            f"{url}/api/rooms/demo/products",
            headers={"authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert len(products.json()["products"]) == 3
        assert httpx.get(f"{url}/watch/demo", timeout=5).text.startswith("<!doctype html>")


def test_a_flag_beats_the_same_settings_variable(tmp_path: Path) -> None:
    """LIVE_HOST names an address this machine cannot listen on, --host one it can: the flag wins
    (the run then stops at the unreachable Redis), and the other way round it loses."""
    env = _env(
        LIVE_DATA_DIR=str(tmp_path),
        LIVE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        LIVE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        LIVE_IO_TIMEOUT_S="2",
        LIVE_PORT="eighty",  # a malformed variable that its flag replaces is not even read
    )
    port = str(free_port())
    cases = [
        ("0.0.0.0", "127.0.0.1", "live: error: Redis at redis://127.0.0.1:"),
        ("256.0.0.1", "127.0.0.1", "live: error: Redis at redis://127.0.0.1:"),
        ("127.0.0.1", "256.0.0.1", f"live: error: cannot listen on 256.0.0.1:{port}:"),
    ]
    for variable, flag, error in cases:
        result = subprocess.run(
            [*LIVE, "serve", "--host", flag, "--port", port],
            env={**env, "LIVE_HOST": variable},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith(error), result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["serve", "--port", "0"], {}, "LIVE_PORT must be between 1 and 65535, not 0"),
        (["serve", "--workers", "0"], {}, "LIVE_WORKERS must be at least 1"),
        (["serve"], {"LIVE_REDIS_URL": "localhost:6379"}, "LIVE_REDIS_URL must start with"),
        (["migrate"], {"LIVE_DATABASE_URL": "db.example:5432"}, "LIVE_DATABASE_URL must start"),
        (["serve"], {"LIVE_TICK_MS": "fast"}, "LIVE_TICK_MS has an invalid value: 'fast'"),
        (
            ["token", "--role", "viewer", "--room", "r", "--sub", "u", "--data-dir", "/proc/x"],
            {},
            "LIVE_DATA_DIR '/proc/x' cannot hold the development secret",
        ),
        (
            ["token", "--role", "viewer", "--room", "r", "--sub", "u", "--ttl", "0"],
            {"LIVE_JWT_SECRET": "s" * 40},
            "ttl must be between 1 and",
        ),
        (
            ["token", "--role", "viewer", "--room", "", "--sub", "u"],
            {"LIVE_JWT_SECRET": "s" * 40},
            "sub and room must not be empty",
        ),
    ],
)
def test_bad_combinations_are_one_line_errors(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [*LIVE, *args],
        env=_env(LIVE_DATA_DIR=str(tmp_path), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("live: error: ") and message in result.stderr, result.stderr


def test_an_address_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*LIVE, "serve", "--port", str(port)],
            env=_env(LIVE_DATA_DIR=str(tmp_path)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert (
        result.stderr == f"live: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )
    assert not (tmp_path / "postgres").exists()  # refused before anything was started
