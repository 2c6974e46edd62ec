import httpx
from serve_kit import Served

from live.migrations import runner


async def test_healthz_and_readyz_answer_json(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "checks": {"redis": "ok", "postgres": "ok", "migrations": "ok", "serving": "ok"},
        }


async def test_readyz_fails_while_the_node_drains(served: Served) -> None:
    """From SIGTERM on (live/drain.py) the load balancer must take the node out."""
    served.app.state.drain.draining = True
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        ready = await client.get("/readyz")
        health = await client.get("/healthz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["serving"].startswith("error: draining")
    assert health.status_code == 200  # alive: it is finishing its work


async def test_readyz_reports_missing_migrations(
    server: str, database_url: str, db_schema: str
) -> None:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            f"DELETE FROM {db_schema}.schema_migrations WHERE version = $1",
            runner.latest_version(),
        )
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["migrations"].startswith("error: at version")


async def test_metrics_is_prometheus_text(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE" in response.text


async def test_unknown_route_is_a_json_error(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not Found"}
