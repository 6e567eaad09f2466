"""How every daemon stops: the first SIGINT/SIGTERM asks, the second insists.

The shape is uvicorn's (``Server.handle_exit``: ``should_exit``, then ``force_exit``):

1. The first signal sets the daemon's stop event (and calls its ``on_stop``). The daemon stops
   taking work, lets what is running finish and closes its links, databases and servers. That
   drain is bounded: after ``drain_s`` seconds the daemon's main coroutine is cancelled, which
   still runs its ``finally`` blocks.
2. A second signal, at any point of that (including while the event loop is blocked, or after it
   has closed and the interpreter is joining threads), exits the process at once with status
   ``128 + signum``, the shell's convention for "killed by this signal". Nothing more is
   cleaned up: the operator asked twice.

The handlers are plain ``signal.signal`` handlers rather than ``loop.add_signal_handler`` so the
second signal works even when the loop does not run; the first one reaches the loop through
``call_soon_threadsafe``. They are installed for the whole of :func:`run_daemon`, start-up and
``asyncio.run``'s own clean-up included, and the previous handlers are restored afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from types import FrameType
from typing import Any, NoReturn

import structlog

log = structlog.get_logger("byteleap.shutdown")

#: the signals that stop a daemon
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: what a daemon's main coroutine is: it runs until the event is set, then cleans up and returns
DaemonMain = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def _exit_now(code: int) -> NoReturn:
    """Flush what was printed, then leave without running any more Python."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


class Shutdown:
    """The two-step stop of one process (see the module docstring).

    ``on_stop`` runs on the event loop at the first signal, after the stop event is set;
    ``force`` is what the second signal calls with ``128 + signum`` (``os._exit`` after a
    flush; tests pass a recorder)."""

    def __init__(
        self,
        *,
        on_stop: Callable[[], None] | None = None,
        force: Callable[[int], None] = _exit_now,
    ) -> None:
        self.on_stop = on_stop
        self.force = force
        #: the first stop signal has arrived
        self.should_exit = False
        #: a second one has (``force`` was called)
        self.force_exit = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def handle_signal(self, signum: int, _frame: FrameType | None = None) -> None:
        """The signal handler: first graceful, then forced."""
        name = signal.Signals(signum).name
        if self.should_exit:
            self.force_exit = True
            log.warning("forced_exit", signal=name)
            self.force(128 + signum)
            return
        self.should_exit = True
        log.info("stop_requested", signal=name, again="exits at once")
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(self._stop_on_loop)

    def _stop_on_loop(self) -> None:
        if self._event is not None and not self._event.is_set():
            self._event.set()
            if self.on_stop is not None:
                self.on_stop()

    @contextlib.contextmanager
    def capture(self) -> Iterator[Shutdown]:
        """Install the handlers for SIGINT and SIGTERM (main thread only); restore the old ones
        on the way out."""
        previous = {sig: signal.signal(sig, self.handle_signal) for sig in STOP_SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def serve(self, main: DaemonMain, *, drain_s: float) -> None:
        """Run ``main(stop)``; once stop is asked for, give it ``drain_s`` seconds to return,
        then cancel it. Its exception, if it raised one, is raised here."""
        self._loop = asyncio.get_running_loop()
        self._event = stop = asyncio.Event()
        if self.should_exit:  # a signal came during start-up, before the loop ran
            self._stop_on_loop()
        task = asyncio.create_task(main(stop))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                await asyncio.wait({task}, timeout=drain_s)
            if not task.done():
                log.warning("drain_timed_out", drain_s=drain_s)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return
        finally:
            stopping.cancel()
            if not task.done():  # serve itself was cancelled
                task.cancel()
            self._loop = None
        task.result()


def run_daemon(
    main: DaemonMain,
    *,
    drain_s: float,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Run a daemon's main coroutine in a fresh event loop until SIGINT/SIGTERM (see the module
    docstring); ``on_stop`` runs on the loop at the first signal."""
    shutdown = Shutdown(on_stop=on_stop)
    with shutdown.capture():
        asyncio.run(shutdown.serve(main, drain_s=drain_s))


__all__ = ["STOP_SIGNALS", "DaemonMain", "Shutdown", "run_daemon"]
