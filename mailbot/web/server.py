"""Serving the staff page with uvicorn: on its own (`mailbot web`) or inside the daemon's loop
(`mailbot run` with [web] serve = true), stopping when the daemon stops."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator

import uvicorn
from sqlalchemy.engine import Engine

from mailbot.clock import Clock, system_clock
from mailbot.config import Settings
from mailbot.errors import ConfigError
from mailbot.web.app import create_app


class _Quiet(uvicorn.Server):
    """The daemon owns SIGTERM and SIGINT: uvicorn must not take them over."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(settings: Settings, any_port_if_taken: bool = False) -> socket.socket:
    """The listening socket, bound now, so that a port in use is said at start-up, plainly; or,
    for the sandbox (`any_port_if_taken`), replaced by a free one."""
    web = settings.web
    family = socket.AF_INET6 if ":" in web.host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (0 does
    # not), and without it Nagle holds each response's body until the client's delayed ACK of
    # the headers: 40 ms on every page after a connection's first (bench/web.py).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((web.host, web.port))
    except OSError as exc:
        if any_port_if_taken:
            try:
                sock.bind((web.host, 0))
                return sock
            except OSError:
                pass
        sock.close()
        raise ConfigError(f"web: cannot listen on {web.host}:{web.port}: {exc.strerror}") from exc
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


async def serve(settings: Settings, engine: Engine, sock: socket.socket, stop: asyncio.Event, *,
                clock: Clock = system_clock, nudge: Callable[[], None] = lambda: None) -> None:
    """Serve until `stop` is set. Behind a reverse proxy on this machine, the proxy's
    X-Forwarded-For and -Proto are believed from loopback only."""
    app = create_app(settings, engine, clock=clock, nudge=nudge)
    server = _Quiet(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                                   proxy_headers=True, forwarded_allow_ips="127.0.0.1,::1"))

    async def stopper() -> None:
        await stop.wait()
        server.should_exit = True

    watch = asyncio.create_task(stopper())
    try:
        await server.serve(sockets=[sock])
    finally:
        watch.cancel()
