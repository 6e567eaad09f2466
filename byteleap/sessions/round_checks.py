"""The checks of one challenge's answers, as pure functions of what arrived (SPEC 4.4):
each GPU's commit, the rows drawn for its reveal, the verifier's jobs for the reveal, and the
verdict an error becomes (:func:`judge`).

:class:`~byteleap.sessions.epoch_round.EpochRound` calls them; so do the benchmarks, which time
exactly what the validator does with one commit.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import datetime

from byteleap.challenge.params import Binding, SamplingParams
from byteleap.challenge.sizing import credited_throughput, impossible_limit
from byteleap.challenge.timing import check_plausible
from byteleap.challenge.verify import Commitment, StageSample, check_shape, draw_sample
from byteleap.errors import (
    ByteLeapError,
    FraudError,
    FraudReason,
    Outcome,
    PeerTimeout,
    VerificationFailed,
    outcome_of,
)
from byteleap.protocol.miner_api.challenges import (
    ChallengeResponse,
    OpeningsRequest,
    OpeningsResponse,
)
from byteleap.protocol.worker_link.challenges import OpeningRequest
from byteleap.sessions.round_planner import PlannedChallenge
from byteleap.sessions.round_records import ChallengeVerdict, VerifyJob

Roots = dict[str, tuple[bytes, ...]]


def judge(exc: BaseException | None, *, reveal: bool = False) -> tuple[Outcome, str | None]:
    """The outcome and failure type of one GPU's challenge that ended with ``exc``.

    ``None`` is verified. Otherwise :func:`byteleap.errors.outcome_of` decides, with one rule on
    top (docs/design-changes.md): an error of the *reveal exchange* after a valid commit
    (``reveal=True``) is a timeout, whatever the miner says caused it, because the commit proved
    the worker reachable. Only what is not a ``ByteLeapError`` (our own bug) stays excused.
    Failure types are the ``FraudReason`` value for fraud and the error's code otherwise.
    """
    if exc is None:
        return Outcome.VERIFIED, None
    if reveal and isinstance(exc, ByteLeapError) and not isinstance(exc, FraudError):
        return Outcome.TIMEOUT, PeerTimeout.code
    if isinstance(exc, VerificationFailed):
        return Outcome.FRAUD, exc.reason.value
    failure = exc.code if isinstance(exc, ByteLeapError) else "internal"
    return outcome_of(exc), failure


def detail_of(exc: BaseException, *, reveal: bool = False) -> str:
    if isinstance(exc, ByteLeapError):
        text = exc.message
        if reveal and not isinstance(exc, FraudError | PeerTimeout):
            text = f"no valid reveal after a valid commit ({exc.code}: {text})"
    else:
        text = f"internal error: {exc!r}"
    return text[:1000]


def verdict(
    challenge_id: str,
    uuid: str,
    exc: BaseException | None,
    now: datetime,
    *,
    elapsed_s: float | None = None,
    throughput: float | None = None,
    verify_s: float | None = None,
    checked: int | None = None,
    reveal: bool = False,
    detail: str | None = None,
) -> ChallengeVerdict:
    """One GPU's verdict: ``exc`` judged (:func:`judge`), closed at ``now``."""
    outcome, failure = judge(exc, reveal=reveal)
    return ChallengeVerdict(
        challenge_id=challenge_id,
        gpu_uuid=uuid,
        closed_at=now,
        outcome=outcome,
        failure=failure,
        detail=detail if exc is None else detail_of(exc, reveal=reveal),
        throughput_flops=throughput if outcome is Outcome.VERIFIED else None,
        elapsed_s=elapsed_s,
        verify_s=verify_s,
        checked_entries=checked,
    )


def binding(planned: PlannedChallenge, uuid: str) -> Binding:
    return Binding(
        miner_hotkey=planned.miner_hotkey,
        worker_pubkey=bytes.fromhex(planned.worker_pubkey),
        gpu_uuid=uuid,
    )


def check_commits(
    planned: PlannedChallenge,
    challenge_id: str,
    seed: bytes,
    response: ChallengeResponse,
    elapsed: float,
    *,
    impossible_factor: float,
    now: datetime,
) -> tuple[dict[str, ChallengeVerdict], Roots, dict[str, float]]:
    """Per GPU: present, signed by the worker, R roots, plausible throughput. The verdicts of
    the GPUs that failed, and the roots and credited throughput of those that passed."""
    verdicts: dict[str, ChallengeVerdict] = {}
    roots: Roots = {}
    rates: dict[str, float] = {}
    commits = {gpu.gpu_uuid: gpu for gpu in response.gpus}
    unrequested = sorted(set(commits) - set(planned.gpu_uuids))
    pubkey = bytes.fromhex(planned.worker_pubkey)
    for uuid in planned.gpu_uuids:
        commit = commits.get(uuid)
        try:
            if unrequested:
                raise VerificationFailed(
                    FraudReason.BAD_COMMIT_SHAPE,
                    f"commitments for GPUs that were not challenged: {unrequested[:4]}",
                )
            if commit is None:
                raise VerificationFailed(FraudReason.BAD_COMMIT_SHAPE, "no commitment for this GPU")
            if not commit.verify(pubkey, challenge_id):
                raise VerificationFailed(
                    FraudReason.BAD_SIGNATURE, "the worker's signature does not verify"
                )
            gpu_roots = tuple(commit.root_list())
            check_shape(Commitment(binding(planned, uuid), seed, planned.params, gpu_roots))
            identity = planned.identities[uuid]
            rate = check_plausible(
                planned.params,
                elapsed,
                impossible_limit(identity, impossible_factor),
                f"{planned.gpu_models.get(uuid, '')} ({identity.model_id})",
            )
            rate = credited_throughput(identity, rate)
        except VerificationFailed as exc:
            verdicts[uuid] = verdict(challenge_id, uuid, exc, now, elapsed_s=elapsed)
            continue
        roots[uuid] = gpu_roots
        rates[uuid] = rate
    return verdicts, roots, rates


def draw_samples(
    planned: PlannedChallenge,
    roots: Mapping[str, tuple[bytes, ...]],
    sampling: SamplingParams,
    rng: random.Random,
) -> dict[str, tuple[StageSample, ...]]:
    """The rows each committed GPU must reveal, drawn from ``rng`` after its commit."""
    return {uuid: draw_sample(planned.params, sampling, rng) for uuid in roots}


def openings_request(
    planned: PlannedChallenge,
    challenge_id: str,
    samples: Mapping[str, tuple[StageSample, ...]],
) -> OpeningsRequest:
    return OpeningsRequest(
        challenge_id=challenge_id,
        worker_pubkey=planned.worker_pubkey,
        openings=[
            OpeningRequest(gpu_uuid=uuid, stage=sample.stage, rows=list(sample.rows))
            for uuid, stages in samples.items()
            for sample in stages
        ],
    )


def unrequested_openings(
    revealed: OpeningsResponse, roots: Mapping[str, tuple[bytes, ...]]
) -> VerificationFailed | None:
    """Fraud when the reveal holds rows of a GPU that was not asked for any."""
    stray = sorted({o.gpu_uuid for o in revealed.openings} - set(roots))
    if not stray:
        return None
    return VerificationFailed(
        FraudReason.UNREQUESTED_OPENING, f"rows revealed for GPUs not asked: {stray[:4]}"
    )


def verify_jobs(
    planned: PlannedChallenge,
    seed: bytes,
    roots: Mapping[str, tuple[bytes, ...]],
    samples: Mapping[str, tuple[StageSample, ...]],
    revealed: OpeningsResponse,
    uuids: Sequence[str],
    exact: frozenset[str],
) -> tuple[VerifyJob, ...]:
    """One verifier job per GPU of ``uuids``: the entries too for those in ``exact``."""
    return tuple(
        VerifyJob(
            miner_hotkey=planned.miner_hotkey,
            worker_pubkey=bytes.fromhex(planned.worker_pubkey),
            gpu_uuid=uuid,
            seed=seed,
            params=planned.params,
            roots=roots[uuid],
            samples=samples[uuid],
            openings=tuple(
                (o.stage, o.row, o.values, o.proof) for o in revealed.openings if o.gpu_uuid == uuid
            ),
            entries=uuid in exact,
        )
        for uuid in uuids
    )


__all__ = [
    "binding",
    "check_commits",
    "detail_of",
    "draw_samples",
    "judge",
    "openings_request",
    "unrequested_openings",
    "verdict",
    "verify_jobs",
]
