import asyncio

import asyncpg

from live.migrations import runner


async def _connect(database_url: str, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(database_url, server_settings={"search_path": schema})


async def test_applies_all_then_nothing(database_url: str, db_schema: str) -> None:
    conn = await _connect(database_url, db_schema)
    try:
        first = await runner.migrate(conn)
        assert [m.version for m in first] == [m.version for m in runner.available()]
        assert await runner.migrate(conn) == []
        assert await runner.applied_version(conn) == runner.latest_version()
        tables = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                db_schema,
            )
        }
        assert {"rooms", "products", "sales", "orders", "schema_migrations"} <= tables
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_once(database_url: str, db_schema: str) -> None:
    conns = [await _connect(database_url, db_schema) for _ in range(6)]
    try:
        results = await asyncio.gather(*(runner.migrate(c) for c in conns))
        assert sum(len(r) for r in results) == len(runner.available())
        rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in runner.available()]
    finally:
        for conn in conns:
            await conn.close()


async def test_sales_can_never_be_oversold(database_url: str, db_schema: str) -> None:
    conn = await _connect(database_url, db_schema)
    try:
        await runner.migrate(conn)
        await conn.execute("INSERT INTO rooms (id, title, host_id) VALUES ('r', 'Room', 'h')")
        product = await conn.fetchval(
            "INSERT INTO products (room_id, sku, title, price_cents) "
            "VALUES ('r', 'sku1', 'Mug', 900) RETURNING id"
        )
        sale = await conn.fetchval(
            "INSERT INTO sales (room_id, product_id, price_cents, stock, limit_per_buyer, "
            "hold_seconds) VALUES ('r', $1, 500, 2, 1, 60) RETURNING id",
            product,
        )
        await conn.execute("UPDATE sales SET sold = 2 WHERE id = $1", sale)
        try:
            await conn.execute("UPDATE sales SET sold = 3 WHERE id = $1", sale)
        except asyncpg.CheckViolationError:
            pass
        else:
            raise AssertionError("sold > stock was accepted")
        insert = (
            "INSERT INTO orders (reservation_id, sale_id, buyer_id, qty, price_cents, "
            "total_cents, payment_ref) VALUES ('h1', $1, 'b', 1, 500, 500, 'p')"
        )
        await conn.execute(insert, sale)
        try:
            await conn.execute(insert, sale)
        except asyncpg.UniqueViolationError:
            pass
        else:
            raise AssertionError("a second order for one reservation was accepted")
    finally:
        await conn.close()
