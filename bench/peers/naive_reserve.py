"""The usual seckill endpoint, the peer of bench/burst.py: a plain Starlette app under uvicorn
(one worker) where each `POST /reserve` verifies the buyer's JWT (PyJWT, no cache), reads the
JSON body and runs one EVALSHA of a decrement-if-positive script on one Redis key.

    python bench/peers/naive_reserve.py PORT REDIS_URL STOCK_KEY   (NAIVE_JWT_SECRET in the env)
"""

from __future__ import annotations

import os
import sys

import jwt
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DECREMENT = """
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
if left < tonumber(ARGV[1]) then return -1 end
return redis.call('DECRBY', KEYS[1], ARGV[1])
"""


def build(redis_url: str, key: str, secret: str) -> Starlette:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5, max_connections=256)
    script = client.register_script(DECREMENT)

    async def reserve(request: Request) -> JSONResponse:
        _, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"])
        except jwt.InvalidTokenError:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.json()
        qty = int(body.get("qty", 1))
        left = int(await script(keys=[key], args=[qty]))
        if left < 0:
            return JSONResponse({"error": "sold_out"}, status_code=409)
        return JSONResponse({"buyer": claims["sub"], "qty": qty, "remaining": left}, 201)

    return Starlette(routes=[Route("/reserve", reserve, methods=["POST"])])


if __name__ == "__main__":
    port, redis_url, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    app = build(redis_url, key, os.environ["NAIVE_JWT_SECRET"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
