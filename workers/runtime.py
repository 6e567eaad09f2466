"""The worker daemon: an asyncio shell around :class:`byteleap.sessions.worker_agent.WorkerAgent`.

It only moves bytes and runs what the agent asks for: open the websocket (reconnecting with
jittered exponential backoff), feed received frames and clock ticks to the agent, send what it
returns, run challenges and reveals on the compute executor, and hand job requests to the job
manager (``workers.jobs``), which runs renters' jobs and keeps them across reconnects. Shutdown
(SIGINT/SIGTERM) stops taking work, abandons a running challenge at the next stage boundary,
stops every job, closes the link and exits, within :data:`DRAIN_S`; a second signal exits at once
(:mod:`daemonkit.signals`, :func:`run_worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from byteleap.config.worker import LinkSection
from byteleap.errors import ByteLeapError, WorkerFailure
from byteleap.protocol import codec
from byteleap.protocol.common import Message
from byteleap.protocol.worker_link.challenges import ChallengeDispatch, RevealRequest
from byteleap.protocol.worker_link.jobs import JobRefused, JobRequest, JobSubmit
from byteleap.sessions.agent_events import (
    AgentInstruction,
    AgentTick,
    CancelJobs,
    ChallengeFinished,
    CloseLink,
    Connected,
    Disconnected,
    HandleJob,
    LogEvent,
    OpenRows,
    PurgeJobs,
    Received,
    RowsOpened,
    RunChallenge,
    Send,
    StopChallenge,
)
from byteleap.sessions.worker_agent import LinkPhase, WorkerAgent
from daemonkit.signals import run_daemon
from workers.backends.base import Abandoned
from workers.compute import ChallengeExecutor
from workers.jobs.manager import Job, JobManager
from workers.metrics import WorkerMetrics

log = structlog.get_logger("byteleap.worker")

TICK_SECONDS = 0.2

#: seconds a stopping worker gets to stop its jobs and finish what it sends (its own waits are
#: shorter: ``jobs.stop_timeout_s`` per job, 30 s for the tasks it started)
DRAIN_S = 60.0


@dataclass(frozen=True)
class LinkSettings:
    url: str
    max_message_bytes: int
    connect_timeout_s: float
    reconnect_min_s: float
    reconnect_max_s: float
    ca_file: str | None = None

    @classmethod
    def from_config(cls, link: LinkSection) -> LinkSettings:
        """The settings of the ``link`` section of a worker config."""
        return cls(
            url=link.miner_url,
            max_message_bytes=link.max_message_bytes,
            connect_timeout_s=link.connect_timeout_s,
            reconnect_min_s=link.reconnect_min_s,
            reconnect_max_s=link.reconnect_max_s,
            ca_file=str(link.ca_file) if link.ca_file else None,
        )


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [base/2, base], base = low * 2**attempt."""
    base = min(high, low * (2 ** min(attempt, 30)))
    return rng.uniform(base / 2, base)


class WorkerRuntime:
    def __init__(
        self,
        agent: WorkerAgent,
        executor: ChallengeExecutor,
        link: LinkSettings,
        *,
        metrics: WorkerMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        jobs: JobManager | None = None,
    ) -> None:
        """``jobs`` runs renters' jobs; without it every job request is refused."""
        self.agent = agent
        self.executor = executor
        self.link = link
        self.metrics = metrics or WorkerMetrics()
        self.clock = clock
        self.rng = rng or random.Random()
        self.should_exit = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._challenge_started: dict[str, float] = {}
        self.jobs = jobs
        if jobs is not None and jobs.on_finished is None:
            jobs.on_finished = self._job_finished

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        if self.jobs is not None:
            await self.jobs.start()
        attempt = 0
        while not self.should_exit.is_set():
            registered = await self._one_connection()
            if self.should_exit.is_set():
                break
            attempt = 0 if registered else attempt + 1
            delay = backoff_delay(
                attempt, self.link.reconnect_min_s, self.link.reconnect_max_s, self.rng
            )
            self.metrics.reconnects.inc()
            log.info("reconnecting", delay_s=round(delay, 2), attempt=attempt)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.should_exit.wait(), timeout=delay)
        if self.jobs is not None:
            await self.jobs.close()
        await self._drain()

    def request_exit(self) -> None:
        """Graceful stop: abandon the current challenge and close the link."""
        self._carry_out(self.agent.shutdown())
        self.should_exit.set()
        if self._ws is not None:
            self._spawn(self._ws.close())

    async def _drain(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.link.url.startswith("wss://"):
            return None
        return ssl.create_default_context(cafile=self.link.ca_file)

    async def _one_connection(self) -> bool:
        """Run one connection until it drops; True when the miner welcomed us on it."""
        try:
            ws = await connect(
                self.link.url,
                max_size=self.link.max_message_bytes,
                open_timeout=self.link.connect_timeout_s,
                ssl=self._ssl_context(),
                compression=None,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            log.warning("connect_failed", url=self.link.url, error=str(exc) or type(exc).__name__)
            return False
        self._ws = ws
        self.metrics.link_up.set(1)
        log.info("connected", url=self.link.url)
        self._carry_out(self.agent.handle(Connected(self.clock())))
        ticker = asyncio.create_task(self._ticks())
        reason = "closed"
        try:
            async for frame in ws:
                self._carry_out(self.agent.handle(Received(frame, self.clock())))
        except ConnectionClosed as exc:
            reason = f"closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        finally:
            ticker.cancel()
            self._ws = None
            self.metrics.link_up.set(0)
            welcomed = self.agent.session_id is not None
            self._carry_out(self.agent.handle(Disconnected(self.clock(), reason)))
        return welcomed

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self._carry_out(self.agent.handle(AgentTick(self.clock())))

    # ------------------------------------------------------------------ instructions

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _carry_out(self, instructions: list[AgentInstruction]) -> None:
        for instruction in instructions:
            match instruction:
                case Send(message=message):
                    self._spawn(self._send(message))
                case RunChallenge(dispatch=dispatch):
                    self._spawn(self._run_challenge(dispatch))
                case OpenRows(request=request):
                    self._spawn(self._open_rows(request))
                case StopChallenge():
                    self.executor.stop()
                case HandleJob(request=request, gpu_uuids=gpus):
                    self._spawn(self._handle_job(request, gpus))
                case CancelJobs(lease_id=lease_id):
                    if self.jobs is not None:
                        self.jobs.cancel_lease(lease_id)
                case PurgeJobs(keep_lease=keep):
                    if self.jobs is not None:
                        self._spawn(self.jobs.purge(keep))
                case CloseLink(reason=reason):
                    log.warning("closing_link", reason=reason)
                    if self._ws is not None:
                        self._spawn(self._ws.close(reason=reason[:120]))
                case LogEvent(level=level, event=event, fields=fields):
                    log.log(_LEVELS.get(level, 20), event, **fields)

    async def _send(self, message: Message) -> None:
        ws = self._ws
        if ws is None or self.agent.phase is LinkPhase.DISCONNECTED:
            return
        with contextlib.suppress(ConnectionClosed):  # the reader notices and reconnects
            await ws.send(codec.encode(message))

    async def _run_challenge(self, dispatch: ChallengeDispatch) -> None:
        cid = dispatch.challenge_id
        started = self.clock()
        self.metrics.busy.set(1)
        try:
            commits = await self.executor.run(dispatch, self.agent.miner_hotkey or "")
        except Abandoned:
            self.metrics.challenges.labels(result="abandoned").inc()
            event = ChallengeFinished(cid, abandoned=True)
        except ByteLeapError as exc:
            self.metrics.challenges.labels(result="failed").inc()
            event = ChallengeFinished(cid, error=exc)
        except Exception as exc:  # a backend bug must not kill the daemon
            log.exception("challenge_crashed", challenge=cid)
            self.metrics.challenges.labels(result="failed").inc()
            event = ChallengeFinished(cid, error=WorkerFailure(f"internal error: {exc!r}"))
        else:
            seconds = self.clock() - started
            self.metrics.challenges.labels(result="committed").inc()
            self.metrics.challenge_seconds.observe(seconds)
            per_gpu = dispatch.params.flops / seconds if seconds > 0 else 0.0
            for uuid in dispatch.gpu_uuids:
                self.metrics.throughput.labels(gpu=uuid).set(per_gpu)
            event = ChallengeFinished(cid, commits=commits)
        finally:
            self.metrics.busy.set(0)
        self._carry_out(self.agent.handle(event))

    async def _open_rows(self, request: RevealRequest) -> None:
        try:
            openings = await self.executor.open(request)
            event = RowsOpened(request.challenge_id, openings=openings)
        except ByteLeapError as exc:
            event = RowsOpened(request.challenge_id, error=exc)
        except Exception as exc:
            log.exception("reveal_crashed", challenge=request.challenge_id)
            event = RowsOpened(request.challenge_id, error=WorkerFailure(repr(exc)))
        self._carry_out(self.agent.handle(event))

    async def _handle_job(self, request: JobRequest, gpu_uuids: tuple[str, ...]) -> None:
        reply: Message
        if self.jobs is None:
            reply = JobRefused(
                request_id=request.request_id,
                lease_id=request.lease_id,
                job_id=request.job_id,
                reason="runner_disabled" if isinstance(request, JobSubmit) else "unknown_job",
                message="this worker runs no jobs",
            )
        else:
            try:
                reply = await self.jobs.handle(request, gpu_uuids)
            except ByteLeapError as exc:
                reply = codec.error_reply_for(exc, in_reply_to=request.request_id)
            except Exception as exc:
                log.exception("job_request_crashed", job=request.job_id)
                failure = WorkerFailure(f"internal error: {exc!r}")
                reply = codec.error_reply_for(failure, in_reply_to=request.request_id)
        self.metrics.running_jobs.set(self.jobs.running() if self.jobs else 0)
        await self._send(reply)

    def _job_finished(self, job: Job) -> None:
        self.metrics.jobs.labels(state=job.state).inc()
        if self.jobs is not None:
            self.metrics.running_jobs.set(self.jobs.running())


_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def run_worker(runtime: WorkerRuntime, *, drain_s: float = DRAIN_S) -> None:
    """Run ``runtime`` until SIGINT/SIGTERM: the first stops it gracefully
    (:meth:`WorkerRuntime.request_exit`) within ``drain_s``, a second exits at once."""

    async def main(stop: asyncio.Event) -> None:
        await runtime.run()

    run_daemon(main, drain_s=drain_s, on_stop=runtime.request_exit)
