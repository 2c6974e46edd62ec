"""The edge's outermost ASGI layer: it times every HTTP request for /metrics and answers the few
hot routes of a flash sale's opening burst (reserve, confirm), and the room WebSocket of a join
or reconnect storm, without Starlette's per-request layers. Under load those layers (two
exception middlewares each wrapping `send`, the router's scan of every route, request_response's
wrappers) cost about as much CPU as the handler itself.

A hot request runs the same endpoint with the same Request, and a refusal meets the same error
handler (gateway/errors.py HANDLERS, looked up by class as Starlette does), so it is answered
exactly as the Starlette route would answer it (tests/edge/test_fast_lane.py compares both).
A hot WebSocket route's endpoint gets the same WebSocket, path params set as the router would;
an exception it lets out reaches the server (uvicorn answers a handshake not yet accepted with
500, or closes with 1011), where Starlette would give the error handlers a WebSocket they cannot
answer. The gateway's session lets none out (it closes with a code of docs/protocol.md). Every
other request goes down Starlette's stack."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from gateway.timing import http_done

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]
R = TypeVar("R", Route, WebSocketRoute)


class FastLane:
    """Hot routes first (a POST whose path one of them matches), then `app` for the rest. A
    hot route's exceptions go to `handlers` by class; one that only the `Exception` handler
    takes is answered by it and raised again, as Starlette's ServerErrorMiddleware does (the
    server logs it)."""

    def __init__(
        self,
        app: ASGIApp,
        hot: Collection[Route],
        handlers: Mapping[Any, ErrorHandler],
        sockets: Collection[WebSocketRoute] = (),
    ) -> None:
        routes: list[Route | WebSocketRoute] = [*hot, *sockets]
        for route in routes:
            plain = all(c.regex == "[^/]+" for c in route.param_convertors.values())
            if (isinstance(route, Route) and route.methods != {"POST"}) or not plain:
                raise ValueError(
                    f"{route.path}: a hot route has plain path params (an HTTP one is a POST)"
                )
        if Exception not in handlers or not all(isinstance(k, type) for k in handlers):
            raise ValueError("the handlers are by exception class, `Exception` among them")
        self.app = app
        self.hot = tuple(hot)
        self.sockets = tuple(sockets)
        self.handlers: dict[type, ErrorHandler] = dict(handlers)
        self.last_resort = handlers[Exception]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            socket = self._hot_socket(scope) if scope["type"] == "websocket" else None
            if socket is None:
                await self.app(scope, receive, send)
            else:
                await socket.endpoint(WebSocket(scope, receive, send))
            return
        started = time.perf_counter()
        try:
            route = self._hot_route(scope)
            if route is None:
                await self.app(scope, receive, send)
            else:
                await self._answer(route, scope, receive, send)
        finally:
            http_done(scope, started)

    def _hot_route(self, scope: Scope) -> Route | None:
        """The hot route for this request, its path params set in the scope as the router
        would; None when the router should decide (a mounted app's root_path included)."""
        if scope["method"] != "POST" or scope.get("root_path"):
            return None
        return _matched(self.hot, scope)

    def _hot_socket(self, scope: Scope) -> WebSocketRoute | None:
        return None if scope.get("root_path") else _matched(self.sockets, scope)

    async def _answer(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response: Response = await route.endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            await (await handler(request, exc))(scope, receive, send)
            if handler is self.last_resort:
                raise
            exc.__traceback__ = None  # as Starlette does: a reused instance keeps no frames
            return
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> ErrorHandler:
        return next(self.handlers[k] for k in type(exc).__mro__ if k in self.handlers)


def _matched(routes: Iterable[R], scope: Scope) -> R | None:
    """The first of `routes` whose path matches, its path params set in the scope."""
    path = scope["path"]
    for route in routes:
        match = route.path_regex.match(path)
        if match is not None:
            scope["route"], scope["endpoint"] = route, route.endpoint
            scope["path_params"] = match.groupdict()
            return route
    return None


class FastLaneApp(Starlette):
    """Starlette with a FastLane outside its middleware stack, for the routes named in `hot` and
    the WebSocket routes named in `sockets` (their path templates; each must be a route of the
    app, a WebSocket one's endpoint a function of the WebSocket)."""

    def __init__(
        self, *, hot: Collection[str], sockets: Collection[str] = (), **kwargs: object
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        by_path = {r.path: r for r in self.routes if isinstance(r, Route)}
        self.hot = [by_path[path] for path in hot]
        by_socket = {r.path: r for r in self.routes if isinstance(r, WebSocketRoute)}
        self.sockets = [by_socket[path] for path in sockets]

    def build_middleware_stack(self) -> ASGIApp:
        return FastLane(
            super().build_middleware_stack(), self.hot, self.exception_handlers, self.sockets
        )
