"""The seam between the miner's two halves.

The worker hub (websocket server for workers) implements :class:`WorkerDirectory`; the validator
API (HTTP for validators) only talks to that interface. Either half is testable without the other.

Failures are typed (``byteleap.errors``) so the validator can score them correctly:

* ``PeerUnavailable``: the worker is busy, leased, or not connected (excused, never scored);
* ``PeerTimeout``: the worker did not answer in time (a missed challenge);
* ``WorkerFailure``: the worker said it could not do the work (a missed challenge);
* ``LinkError``: the worker's connection dropped mid-request (excused);
* ``MalformedMessage``: the worker answered with something that is not a valid answer.
"""

from __future__ import annotations

from typing import Protocol

from byteleap.protocol.miner_api.inventory import WorkerSummary
from byteleap.protocol.worker_link.challenges import (
    ChallengeCommit,
    ChallengeDispatch,
    Reveal,
    RevealRequest,
)
from byteleap.protocol.worker_link.jobs import JobReply, JobRequest
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart, LeaseStop


class WorkerDirectory(Protocol):
    def summaries(self) -> list[WorkerSummary]:
        """Every registered, connected worker."""
        ...

    def connected(self) -> int: ...

    async def challenge(
        self, worker_pubkey: bytes, dispatch: ChallengeDispatch, *, timeout: float
    ) -> ChallengeCommit:
        """Send the challenge to the worker and wait for its commit."""
        ...

    async def reveal(
        self, worker_pubkey: bytes, request: RevealRequest, *, timeout: float
    ) -> Reveal:
        """Ask the worker to open rows of a committed challenge and wait for them."""
        ...

    async def lease_start(
        self, worker_pubkey: bytes, start: LeaseStart, *, timeout: float
    ) -> LeaseAck: ...

    async def lease_stop(
        self, worker_pubkey: bytes, stop: LeaseStop, *, timeout: float
    ) -> LeaseAck: ...

    async def job(self, worker_pubkey: bytes, request: JobRequest, *, timeout: float) -> JobReply:
        """Send a job request; the answer type of ``worker_link.JOB_ANSWERS`` or ``JobRefused``."""
        ...
