"""The miner's ``ports.WorkerDirectory`` over the connected workers: :class:`HubDirectory`, the
base of :class:`~neurons.miner.hub.WorkerHub`, sends one request to a worker's session and
waits for the reply the registry routes back, typed as ``ports`` says (see
:mod:`neurons.miner.hub` for the connection and its failures)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from byteleap.errors import (
    ByteLeapError,
    LinkError,
    MalformedMessage,
    PeerTimeout,
    PeerUnavailable,
    WorkerFailure,
)
from byteleap.protocol import codec
from byteleap.protocol.common import Message
from byteleap.protocol.miner_api.inventory import WorkerSummary
from byteleap.protocol.worker_link.challenges import (
    ChallengeCommit,
    ChallengeDispatch,
    Reveal,
    RevealRequest,
)
from byteleap.protocol.worker_link.jobs import (
    JOB_ANSWERS,
    JobAccepted,
    JobRefused,
    JobReply,
    JobRequest,
    JobResult,
    JobStatus,
)
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart, LeaseStop
from byteleap.protocol.worker_link.session import (
    ErrorReply,
    Unavailable,
)
from byteleap.sessions.miner_registry import (
    RequestKey,
    WorkerRegistry,
)
from neurons.miner.hub_metrics import HubMetrics

Pending = asyncio.Future[Message]


def _reply_error(reply: ErrorReply) -> ByteLeapError:
    """The typed error for a worker's ``ErrorReply`` to one of our requests."""
    if reply.code == WorkerFailure.code:
        return WorkerFailure(reply.message or "the worker could not do the work")
    if reply.code == PeerUnavailable.code:
        return PeerUnavailable(reply.message)
    return MalformedMessage(f"the worker refused the request ({reply.code}): {reply.message}")


class HubDirectory:
    """The ``WorkerDirectory`` methods of :class:`~neurons.miner.hub.WorkerHub`, over the state
    it sets up."""

    clock: Callable[[], float]
    metrics: HubMetrics
    registry: WorkerRegistry[Pending]
    _conns: dict[str, ServerConnection]

    def summaries(self) -> list[WorkerSummary]:
        return self.registry.summaries(self.clock())

    def connected(self) -> int:
        return self.registry.connected()

    async def _request(
        self, worker_pubkey: bytes, key: RequestKey, message: Message, limit_s: float
    ) -> tuple[str, Message]:
        future: Pending = asyncio.get_running_loop().create_future()
        session_id = self.registry.begin(bytes(worker_pubkey), key, future)
        kind = key[0]
        try:
            ws = self._conns.get(session_id)
            if ws is None:
                raise LinkError("the worker's connection is closing")
            async with asyncio.timeout(limit_s):
                try:
                    await ws.send(codec.encode(message))
                except ConnectionClosed:
                    raise LinkError("the worker's connection closed") from None
                reply = await future
        except TimeoutError:
            self.metrics.requests.labels(kind=kind, outcome="timeout").inc()
            raise PeerTimeout(f"no answer to {kind} {key[1]} within {limit_s:g} s") from None
        except LinkError:
            self.metrics.requests.labels(kind=kind, outcome="link").inc()
            raise
        finally:
            self.registry.cancel(session_id, key)
        self.metrics.requests.labels(kind=kind, outcome=reply.message_type()).inc()
        return session_id, reply

    async def challenge(
        self,
        worker_pubkey: bytes,
        dispatch: ChallengeDispatch,
        *,
        timeout: float,
    ) -> ChallengeCommit:
        try:
            _, reply = await self._request(
                worker_pubkey, ("challenge", dispatch.challenge_id), dispatch, timeout
            )
        except PeerUnavailable:
            self.metrics.requests.labels(kind="challenge", outcome="unavailable").inc()
            raise
        match reply:
            case ChallengeCommit():
                return reply
            case Unavailable(leased=leased):
                raise PeerUnavailable(leased=leased)
            case ErrorReply():
                raise _reply_error(reply)
        raise MalformedMessage(f"unexpected {reply.message_type()} in answer to a challenge")

    async def reveal(
        self,
        worker_pubkey: bytes,
        request: RevealRequest,
        *,
        timeout: float,
    ) -> Reveal:
        _, reply = await self._request(
            worker_pubkey, ("reveal", request.challenge_id), request, timeout
        )
        if isinstance(reply, Reveal):
            return reply
        if isinstance(reply, ErrorReply):
            raise _reply_error(reply)
        raise MalformedMessage(f"unexpected {reply.message_type()} in answer to a reveal request")

    async def _lease(
        self, worker_pubkey: bytes, message: LeaseStart | LeaseStop, limit_s: float
    ) -> LeaseAck:
        session_id, reply = await self._request(
            worker_pubkey, ("lease", message.lease_id), message, limit_s
        )
        if isinstance(reply, LeaseAck):
            if reply.accepted:
                self.registry.lease_changed(session_id, leased=isinstance(message, LeaseStart))
            return reply
        if isinstance(reply, ErrorReply):
            raise _reply_error(reply)
        raise MalformedMessage(f"unexpected {reply.message_type()} in answer to {message.type}")

    async def lease_start(
        self,
        worker_pubkey: bytes,
        start: LeaseStart,
        *,
        timeout: float,
    ) -> LeaseAck:
        return await self._lease(worker_pubkey, start, timeout)

    async def lease_stop(
        self,
        worker_pubkey: bytes,
        stop: LeaseStop,
        *,
        timeout: float,
    ) -> LeaseAck:
        return await self._lease(worker_pubkey, stop, timeout)

    async def job(
        self,
        worker_pubkey: bytes,
        request: JobRequest,
        *,
        timeout: float,
    ) -> JobReply:
        """Send a job request and return the worker's answer: the answer type of the request
        (``JOB_ANSWERS``) or ``JobRefused``. An ``ErrorReply`` raises its typed error."""
        _, reply = await self._request(worker_pubkey, ("job", request.request_id), request, timeout)
        if isinstance(reply, ErrorReply):
            raise _reply_error(reply)
        expected = JOB_ANSWERS[type(request)]
        if not isinstance(reply, JobRefused | expected):
            raise MalformedMessage(f"unexpected {reply.message_type()} in answer to {request.type}")
        assert isinstance(reply, JobReply)
        if isinstance(reply, JobAccepted | JobStatus | JobResult):
            job_id = reply.job.job_id
        else:
            job_id = reply.job_id
        if (reply.lease_id, job_id) != (request.lease_id, request.job_id):
            raise MalformedMessage(f"the worker answered about another job than {request.job_id}")
        return reply
