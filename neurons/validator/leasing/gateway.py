"""Every call the validator's lease code makes to a miner, behind one small adapter.

The lease driver (:mod:`.manager`) and the renter API's job routes reach miners only through
:class:`MinerGateway`: ``lease_start``, ``lease_stop``, receipt countersigning and the six job
requests. How those travel (today one ``MinerClient`` method each) is decided here alone.

A miner is reached at its current endpoint from the store (the matching offer's endpoint for
``lease_start``); a miner that serves no endpoint is a :class:`~byteleap.errors.LinkError`, as
is any failure to connect. A client lives for one call (or one artifact download).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from byteleap.errors import Forbidden, LinkError, MalformedMessage, VerificationFailed
from byteleap.protocol.validator_api import (
    JobArtifactRequest,
    JobArtifactResponse,
    JobCancelRequest,
    JobCancelResponse,
    JobLogsRequest,
    JobLogsResponse,
    JobResultRequest,
    JobResultResponse,
    JobStatusRequest,
    JobStatusResponse,
    JobSubmitRequest,
    JobSubmitResponse,
    LeaseStartRequest,
    LeaseStartResponse,
    LeaseStopRequest,
    Receipt,
    SignedReceipt,
)
from neurons.common.miner_client import MinerClient

#: ``connect(miner_hotkey, base_url, timeout)`` -> a signed client of that miner
Connect = Callable[[str, str, float], MinerClient]
#: the miner's answer was refused: it is wrong, not unreachable (see :func:`peer_wrong`)
PEER_WRONG = (Forbidden, MalformedMessage, VerificationFailed)


def peer_wrong(exc: BaseException) -> bool:
    """Whether a failed call means the miner answered wrongly (403, a malformed answer, a bad
    signature) rather than that the call did not get through."""
    return isinstance(exc, PEER_WRONG)


class Endpoints(Protocol):
    async def miner_endpoint(self, miner_hotkey: str) -> str | None: ...


class JobLink:
    """One miner client, for the job requests of one lease."""

    def __init__(self, client: MinerClient) -> None:
        self._client = client

    async def submit(self, request: JobSubmitRequest) -> JobSubmitResponse:
        return await self._client.job_submit(request)

    async def status(self, request: JobStatusRequest) -> JobStatusResponse:
        return await self._client.job_status(request)

    async def cancel(self, request: JobCancelRequest) -> JobCancelResponse:
        return await self._client.job_cancel(request)

    async def logs(self, request: JobLogsRequest) -> JobLogsResponse:
        return await self._client.job_logs(request)

    async def result(self, request: JobResultRequest) -> JobResultResponse:
        return await self._client.job_result(request)

    async def artifact(self, request: JobArtifactRequest) -> JobArtifactResponse:
        return await self._client.job_artifact(request)


class MinerGateway:
    """The miner calls of leases and their jobs (see the module docstring)."""

    def __init__(self, *, connect: Connect, endpoints: Endpoints, request_timeout_s: float) -> None:
        self.connect = connect
        self.endpoints = endpoints
        self.request_timeout_s = request_timeout_s

    @contextlib.asynccontextmanager
    async def _client(
        self, miner_hotkey: str, lease_id: str, endpoint: str | None = None
    ) -> AsyncIterator[MinerClient]:
        if endpoint is None:
            endpoint = await self.endpoints.miner_endpoint(miner_hotkey)
        if not endpoint:
            raise LinkError(f"the miner of lease {lease_id} serves no endpoint now")
        client = self.connect(miner_hotkey, endpoint, self.request_timeout_s)
        try:
            yield client
        finally:
            await client.aclose()

    async def start_lease(
        self, miner_hotkey: str, endpoint: str, request: LeaseStartRequest
    ) -> LeaseStartResponse:
        async with self._client(miner_hotkey, request.lease_id, endpoint) as client:
            return await client.lease_start(request)

    async def stop_lease(self, miner_hotkey: str, lease_id: str, reason: str) -> bool:
        async with self._client(miner_hotkey, lease_id) as client:
            answer = await client.lease_stop(LeaseStopRequest(lease_id=lease_id, reason=reason))
        return answer.stopped

    async def countersign(self, miner_hotkey: str, receipt: Receipt) -> SignedReceipt:
        """The receipt signed by this validator and countersigned by the miner."""
        async with self._client(miner_hotkey, receipt.lease_id) as client:
            answer = await client.submit_receipt(receipt)
        return answer.signed

    @contextlib.asynccontextmanager
    async def jobs(self, miner_hotkey: str, lease_id: str) -> AsyncIterator[JobLink]:
        """A link for the job requests of ``lease_id`` at its miner."""
        async with self._client(miner_hotkey, lease_id) as client:
            yield JobLink(client)


__all__ = ["PEER_WRONG", "Connect", "Endpoints", "JobLink", "MinerGateway", "peer_wrong"]
