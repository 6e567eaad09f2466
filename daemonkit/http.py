"""Serving an ASGI app with uvicorn inside a daemon's event loop: the one way every process does it.

The daemon owns the process's signals (:mod:`daemonkit.signals`), so uvicorn's own signal capture
is never used: :class:`EmbeddedServer` drives uvicorn through the steps ``Server.serve`` takes
(``startup``, ``main_loop``, ``shutdown``) itself. What every caller gets:

- ``port`` 0 picks a free port, and :attr:`EmbeddedServer.port` tells which one;
- a port that cannot be bound is a :class:`~byteleap.errors.ConfigError` naming the config key,
  raised by :meth:`~EmbeddedServer.start`, not a ``SystemExit`` from inside uvicorn;
- :meth:`~EmbeddedServer.stop` stops accepting, then gives open requests ``graceful_s`` seconds
  before they are cut (uvicorn's ``timeout_graceful_shutdown``);
- no lifespan, no websockets and no access log (the daemons log what matters themselves), and
  uvicorn's own log lines go through the process's logging set-up (:mod:`daemonkit.logs`).
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any, Self

import structlog
import uvicorn

from byteleap.errors import ConfigError

log = structlog.get_logger("byteleap.http")

#: seconds open requests get to finish when a server stops
GRACEFUL_S = 10


class EmbeddedServer:
    """uvicorn serving ``app`` on ``host:port`` in the running event loop.

    ``name`` labels it in logs and errors ("renter API"), ``key`` is the config key a bind failure
    names; ``http`` picks uvicorn's HTTP implementation ("auto" or "h11")."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        name: str = "API",
        key: str = "api.port",
        graceful_s: int = GRACEFUL_S,
        http: str = "auto",
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            ws="none",
            http=http,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=graceful_s,
        )
        config.load()
        self.host = host
        self.name = name
        self.key = key
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return self._task is not None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _cannot_bind(self) -> ConfigError:
        return ConfigError(
            f"cannot serve the {self.name} on {self.host}:{self.server.config.port}", key=self.key
        )

    async def start(self) -> None:
        """Bind and start serving; a port that cannot be bound is a ``ConfigError``."""
        if self._task is not None:
            return
        config = self.server.config
        self.server.lifespan = config.lifespan_class(config)  # what Server.serve would set
        try:
            await self.server.startup()
        except SystemExit:  # uvicorn exits when it cannot bind
            raise self._cannot_bind() from None
        if self.server.should_exit:
            raise self._cannot_bind()
        self._task = asyncio.create_task(self.server.main_loop())
        log.info("serving", api=self.name, url=self.url)

    async def stop(self) -> None:
        """Stop accepting, let open requests finish for ``graceful_s`` seconds, then close.
        Stopping a server that is not running does nothing."""
        task, self._task = self._task, None
        if task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self.server.shutdown()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


__all__ = ["GRACEFUL_S", "EmbeddedServer"]
