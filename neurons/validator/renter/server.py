"""Serving the renter API with uvicorn inside the validator's event loop.

The validator owns the process's signals (SIGINT/SIGTERM set its stop event), so uvicorn's own
signal capture is not used: the server is started and stopped through its ``startup`` /
``main_loop`` / ``shutdown`` steps, and stopping lets open requests finish for uvicorn's
graceful-shutdown time.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
import uvicorn

from byteleap.errors import ConfigError

log = structlog.get_logger("byteleap.validator.renter")

#: seconds open requests get to finish at shutdown
GRACEFUL_S = 10


class RenterApiServer:
    """uvicorn around one ASGI app; ``port`` 0 picks a free port (see :attr:`port`)."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            ws="none",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_S,
        )
        config.load()
        self.host = host
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving; a port that cannot be bound is a ``ConfigError``."""
        config = self.server.config
        self.server.lifespan = config.lifespan_class(config)  # what Server.serve would set
        try:
            await self.server.startup()
        except SystemExit:  # uvicorn exits when it cannot bind
            raise ConfigError(
                f"cannot serve the renter API on {self.host}:{self.server.config.port}",
                key="api.port",
            ) from None
        if self.server.should_exit:
            raise ConfigError(
                f"cannot serve the renter API on {self.host}:{self.server.config.port}",
                key="api.port",
            )
        self._task = asyncio.create_task(self.server.main_loop())
        log.info("renter_api_serving", url=self.url)

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self.server.shutdown()


__all__ = ["RenterApiServer"]
