"""Challenges through the miner: ``/challenge``, ``/epoch`` and ``/reveal`` (SPEC 4).

A challenge is refused for a leased worker (the :class:`~byteleap.sessions.miner_leases.LeaseTable`
decides), dispatched to the worker, and the worker's commit is countersigned for the validator
that asked. ``/epoch`` runs every challenge of an epoch at once through the same code and streams
each record back as soon as it is done, first finished first sent; a challenge's failure becomes
its ``EpochFailure`` record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable

from byteleap.errors import ByteLeapError, MalformedMessage, PeerTimeout, PeerUnavailable
from byteleap.protocol.miner_api.challenges import (
    ChallengeRequest,
    ChallengeResponse,
    EpochFailure,
    EpochRequest,
    OpeningsRequest,
    OpeningsResponse,
    evidence_payload,
)
from byteleap.protocol.stream import EpochRecord, encode_record, epoch_failure_for
from byteleap.protocol.worker_link.challenges import ChallengeDispatch, RevealRequest
from neurons.miner.api.leases import LeaseService
from neurons.miner.ports import WorkerDirectory

log = logging.getLogger("neurons.miner.api")

#: seconds the miner waits for a commit beyond the challenge's own deadline (link latency)
CHALLENGE_SLACK_S = 0.5


def challenge_timeout(req: ChallengeRequest) -> float:
    """How long the miner waits for a challenge's commit: its deadline plus the link's slack."""
    return req.deadline_ms / 1000.0 + CHALLENGE_SLACK_S


class ChallengeService:
    def __init__(
        self,
        *,
        miner_hotkey: str,
        signer: Callable[[bytes], bytes],
        workers: WorkerDirectory,
        leases: LeaseService,
        request_timeout: float,
    ) -> None:
        self.miner_hotkey = miner_hotkey
        self.signer = signer
        self.workers = workers
        self.leases = leases
        self.request_timeout = request_timeout

    async def countersigned_commit(self, caller: str, req: ChallengeRequest) -> ChallengeResponse:
        """One challenge: refuse a leased worker, dispatch, countersign the commit for caller."""
        if self.leases.leased(req.worker_pubkey):
            raise PeerUnavailable(leased=True)
        dispatch = ChallengeDispatch(
            challenge_id=req.challenge_id,
            seed=req.seed,
            params=req.params,
            gpu_uuids=req.gpu_uuids,
            deadline_ms=req.deadline_ms,
        )
        commit = await self.workers.challenge(
            req.worker_pubkey_bytes, dispatch, timeout=challenge_timeout(req)
        )
        if commit.challenge_id != req.challenge_id:
            raise MalformedMessage("the worker committed to a different challenge")
        payload = evidence_payload(
            challenge_id=req.challenge_id,
            validator_hotkey=caller,
            miner_hotkey=self.miner_hotkey,
            worker_pubkey=req.worker_pubkey_bytes,
            seed=req.seed,
            params=req.params,
            gpus=commit.gpus,
        )
        return ChallengeResponse(
            challenge_id=req.challenge_id,
            miner_hotkey=self.miner_hotkey,
            worker_pubkey=req.worker_pubkey,
            gpus=commit.gpus,
            miner_signature=bytes(self.signer(payload)),
        )

    async def epoch_record(self, caller: str, req: ChallengeRequest) -> EpochRecord:
        """The record of one challenge of an epoch: its countersigned commit or its failure."""
        try:
            async with asyncio.timeout(challenge_timeout(req)):
                return await self.countersigned_commit(caller, req)
        except TimeoutError:
            return epoch_failure_for(
                req.challenge_id,
                PeerTimeout(f"no commit within {challenge_timeout(req):g} s"),
            )
        except ByteLeapError as exc:
            log.info("epoch challenge %s -> %s: %s", req.challenge_id, exc.code, exc.message[:200])
            return epoch_failure_for(req.challenge_id, exc)
        except Exception:
            log.exception("validator API bug on epoch challenge %s", req.challenge_id)
            return EpochFailure(
                challenge_id=req.challenge_id, code="internal", message="internal error"
            )

    async def epoch_stream(self, caller: str, req: EpochRequest) -> AsyncGenerator[bytes, None]:
        """Dispatch every challenge at once; yield each record as soon as it is ready."""
        tasks = [asyncio.create_task(self.epoch_record(caller, one)) for one in req.challenges]
        sent = failed = 0
        try:
            for next_done in asyncio.as_completed(tasks):
                record = await next_done
                sent += 1
                failed += 1 if isinstance(record, EpochFailure) else 0
                yield encode_record(record)
        finally:
            for task in tasks:
                task.cancel()  # a no-op once all are done; else the validator left mid-stream
            log.info(
                "epoch %s of %s: %d of %d records sent (%d failures)%s",
                req.epoch_id,
                caller,
                sent,
                len(tasks),
                failed,
                "" if sent == len(tasks) else ", the validator left",
            )

    async def reveal(self, req: OpeningsRequest) -> OpeningsResponse:
        answer = await self.workers.reveal(
            bytes.fromhex(req.worker_pubkey),
            RevealRequest(challenge_id=req.challenge_id, openings=req.openings),
            timeout=self.request_timeout,
        )
        if answer.challenge_id != req.challenge_id:
            raise MalformedMessage("the worker revealed a different challenge")
        return OpeningsResponse(challenge_id=req.challenge_id, openings=answer.openings)


__all__ = ["CHALLENGE_SLACK_S", "ChallengeService", "challenge_timeout"]
