"""Serving the renter API with uvicorn inside the validator's event loop.

The validator owns the process's signals (:mod:`daemonkit.signals`), so the server is the shell's
:class:`~daemonkit.http.EmbeddedServer`, the one way every daemon embeds uvicorn: started and
stopped by the daemon, a port it cannot bind is a ``ConfigError`` naming ``api.port``, and
stopping lets open requests finish for :data:`GRACEFUL_S` seconds.
"""

from __future__ import annotations

from typing import Any

from daemonkit.http import EmbeddedServer

#: seconds open requests get to finish at shutdown
GRACEFUL_S = 10


class RenterApiServer(EmbeddedServer):
    """uvicorn around the renter app; ``port`` 0 picks a free port (see :attr:`port`)."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        super().__init__(app, host, port, name="renter API", key="api.port", graceful_s=GRACEFUL_S)


__all__ = ["GRACEFUL_S", "RenterApiServer"]
