"""A benchmark's stub server in a process of its own: a Python script run with ``-c`` that prints
one JSON line (its ``port`` and anything else the script reports) when it listens, answers a
``report`` line on stdin with one JSON line, and exits on a ``stop`` line."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


class StubProcess:
    """The process of one stub server and the port it listens on."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process, self.port = process, port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    async def spawn(
        script: str, *args: str, limit: int | None = None
    ) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
        """Start ``script`` with ``args``; the process and the first line it printed."""
        extra: dict[str, Any] = {} if limit is None else {"limit": limit}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, **extra,
        )  # fmt: skip
        assert process.stdout is not None
        return process, dict(json.loads(await process.stdout.readline()))

    async def ask_report(self) -> dict[str, Any]:
        """Send ``report`` and read the one JSON line it answers with."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"report\n")
        await self.process.stdin.drain()
        return dict(json.loads(await self.process.stdout.readline()))

    async def stop(self) -> None:
        if self.process.returncode is None and self.process.stdin is not None:
            self.process.stdin.write(b"stop\n")
            try:
                await self.process.stdin.drain()
                await asyncio.wait_for(self.process.wait(), 10)
            except (TimeoutError, ConnectionError):
                self.process.kill()
                await self.process.wait()
