"""Peer for bench/fanout: python-socketio's AsyncServer with its AsyncRedisManager, served by
uvicorn in one process. A viewer connects with ?room=R and joins that room; the bench publishes
each room event on the manager's Redis channel exactly as a write-only AsyncRedisManager does.

    python socketio_server.py PORT REDIS_URL CHANNEL

Runs in the bench's own virtual environment (python-socketio is no dependency of the project),
so socketio is imported by name at run time.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any
from urllib.parse import parse_qs


def main() -> None:
    port, redis_url, channel = sys.argv[1], sys.argv[2], sys.argv[3]
    socketio: Any = importlib.import_module("socketio")
    uvicorn: Any = importlib.import_module("uvicorn")
    manager = socketio.AsyncRedisManager(redis_url, channel=channel)
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        transports=["websocket"],
        cors_allowed_origins="*",
        max_http_buffer_size=4096,
    )

    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        room = parse_qs(environ.get("QUERY_STRING", "")).get("room", [""])[0]
        if room:
            await sio.enter_room(sid, room)

    sio.on("connect", connect)
    app = socketio.ASGIApp(sio)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(port),
        log_level="warning",
        ws_per_message_deflate=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
