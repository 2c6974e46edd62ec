"""`live webhooks ...` as an operator runs it, and no event lost when a `live serve` is killed
with SIGKILL between the commit of its events and their delivery."""

from __future__ import annotations

import signal

import httpx
from live_env import live_serve
from sale_kit import confirm, open_sale, reserve
from serve_kit import serve_app
from webhook_kit import (
    SECRET,
    all_delivered,
    delivering,
    in_order,
    live_command,
    outbox,
    receiving,
    until_stored,
)

from live.embedded import free_port
from live.settings import Settings


async def test_a_dead_letter_replays_with_the_cli(settings: Settings) -> None:
    async with receiving(up=False) as receiver:
        own = delivering(settings, receiver.url, webhook_max_age_s=0.3)
        async with (
            serve_app(own) as served,
            httpx.AsyncClient(base_url=served.url, timeout=30) as client,
        ):
            await open_sale(client, own, stock=3)
            (event,), _ = await until_stored(
                own, lambda _, sent: len(sent) == 1 and sent[0]["dead"], "dead-lettered"
            )
            code, out, err = await live_command(own, "webhooks", "deliveries", "--failed")
            assert (code, err) == (0, ""), err
            assert event["id"] in out and "dead" in out and "ConnectError" in out, out
            code, out, _ = await live_command(own, "webhooks", "list")
            assert code == 0 and receiver.url in out and "(global)" in out, out
            assert out.splitlines()[1].split()[2:5] == ["0", "0", "1"], out  # pending, ok, dead
            await receiver.start()
            code, out, err = await live_command(own, "webhooks", "replay", event["id"])
            assert (code, err) == (0, ""), err
            assert f"{event['id']}: 1 deliveries due again" in out
            await receiver.until(lambda: event["id"] in receiver.ids(acked=True), "replayed")
            (again,) = [g for g in receiver.got if g.event["id"] == event["id"]]
            assert again.signed_by(SECRET) and again.event["type"] == "sale.started"
            await until_stored(own, all_delivered, "delivered after the replay")
            for bad in ("evt_" + "0" * 32, "nonsense"):
                code, out, err = await live_command(own, "webhooks", "replay", bad)
                assert code == 1 and out == "" and err.count("\n") == 1, (code, out, err)
                assert err.startswith("live: error: no event"), err


async def test_webhooks_test_sends_a_signed_event(settings: Settings) -> None:
    async with receiving() as receiver:
        own = delivering(settings, receiver.url)
        code, out, err = await live_command(own, "webhooks", "test", receiver.url)
        assert (code, err) == (0, ""), err
        assert out.startswith(f"{receiver.url}: HTTP 200 in "), out
        (got,) = receiver.got
        assert got.signed_by(SECRET) and got.event["type"] == "webhook.test"
        assert got.event["id"] in out
        down = f"http://127.0.0.1:{free_port()}/hook"
        for args in (
            [down],
            ["ftp://example.com/"],
            [receiver.url, "--secret", "short"],
        ):
            code, out, err = await live_command(own, "webhooks", "test", *args)
            assert code == 1 and out == "" and err.count("\n") == 1, (args, code, out, err)
            assert err.startswith("live: error: "), err
        code, out, err = await live_command(own, "webhooks", "list")
        assert (code, out) == (1, ""), (out, err)  # nothing ever ran on this schema
        assert (
            err == f"live: error: schema {own.database_schema!r} has no webhook tables: "
            "run `live migrate`\n"
        ), err


async def test_no_event_is_lost_when_a_process_is_killed_before_delivering(
    settings: Settings,
) -> None:
    """The receiver holds the first delivery, so every event is committed and none delivered
    when the process is SIGKILLed; the next process delivers them all (the dead one's claim on
    its queue runs out)."""
    async with receiving("hang") as receiver:
        own = delivering(settings, receiver.url)
        async with live_serve(own) as (url, process):
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                sale = (await open_sale(client, own, stock=10, limit=2))["id"]
                for n in range(5):
                    held = await reserve(client, own, sale, f"b{n}", key=f"k{n}")
                    assert (
                        await confirm(client, own, held.json()["id"], f"b{n}")
                    ).status_code == 201
            await receiver.until(lambda: receiver.holding > 0, "a delivery in flight")
            process.send_signal(signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
        events = await outbox(own)
        assert [e["type"] for e in events] == ["sale.started", *["order.created"] * 5]
        assert receiver.ids(acked=True) == set()
        await receiver.set_mode("ok")
        async with live_serve(own):
            events, _ = await until_stored(own, all_delivered, "delivered by the next process")
    assert receiver.ids(acked=True) == {e["id"] for e in events}
    assert not in_order(receiver.got), in_order(receiver.got)
    assert all(g.signed_by(SECRET) for g in receiver.got)
