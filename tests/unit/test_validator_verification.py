"""Verification scheduling: the process pool judges exactly as in-process verification does, a
dead pool process is our failure (excused), and every error class maps to its verdict."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import numpy as np
import pytest

from byteleap import errors
from byteleap.challenge.params import Binding, ChallengeParams, SamplingParams
from byteleap.challenge.reference import ProverRun, open_rows, recompute_rows, run_reference
from byteleap.challenge.verify import StageSample, draw_sample
from byteleap.errors import FraudReason, Outcome, TransientError, VerificationFailed
from byteleap.sessions.round_checks import detail_of, judge
from byteleap.sessions.round_records import VerifyJob, VerifyReport
from neurons.validator.verification import VerifierPool, verify_job

HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
PUBKEY = bytes(range(32))
GPU = "CPU-00000000000000000000000000000001"
SEED = bytes(range(100, 132))
PARAMS = ChallengeParams(m=64, n=32, k=48, v=15, stages=4)
SAMPLING = SamplingParams(stages=3, rows=6, columns=4)


@pytest.fixture(scope="module")
def honest() -> ProverRun:
    binding = Binding(miner_hotkey=HOTKEY, worker_pubkey=PUBKEY, gpu_uuid=GPU)
    return run_reference(binding, SEED, PARAMS)


@pytest.fixture(scope="module")
def verifier() -> Iterator[VerifierPool]:
    pool = VerifierPool(2)
    yield pool
    pool.close()


def job_for(run: ProverRun, rng_seed: int = 1) -> VerifyJob:
    samples = draw_sample(PARAMS, SAMPLING, random.Random(rng_seed))
    openings = tuple(
        (o.stage, o.row, o.values, b"".join(o.proof))
        for s in samples
        for o in open_rows(run, s.stage, s.rows)
    )
    return VerifyJob(
        miner_hotkey=HOTKEY,
        worker_pubkey=PUBKEY,
        gpu_uuid=GPU,
        seed=SEED,
        params=PARAMS,
        roots=tuple(run.roots),
        samples=samples,
        openings=openings,
    )


def with_openings(job: VerifyJob, openings: list[tuple[int, int, bytes, bytes]]) -> VerifyJob:
    return VerifyJob(
        job.miner_hotkey,
        job.worker_pubkey,
        job.gpu_uuid,
        job.seed,
        job.params,
        job.roots,
        job.samples,
        tuple(openings),
    )


def flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 1
    return bytes(out)


def unrequested_row(job: VerifyJob) -> int:
    sample: StageSample = job.samples[0]
    return next(r for r in range(PARAMS.m) if r not in sample.rows)


def tampered_jobs(job: VerifyJob) -> list[tuple[FraudReason, VerifyJob]]:
    """One job per way of tampering with an honest reveal, with the reason it must fail for."""
    first = list(job.openings)
    stage, row, values, proof = first[0]
    rest = first[1:]
    extra = (stage, unrequested_row(job), values, proof)
    cases = [
        (FraudReason.BAD_PROOF, [(stage, row, flip(values, 0), proof), *rest]),  # wrong value
        (FraudReason.BAD_PROOF, [(stage, row, values, flip(proof, 5)), *rest]),  # wrong sibling
        (FraudReason.BAD_ROW_SHAPE, [(stage, row, values[:-4], proof), *rest]),
        (FraudReason.BAD_PROOF_LENGTH, [(stage, row, values, proof[:-1]), *rest]),  # ragged
        (FraudReason.BAD_PROOF_LENGTH, [(stage, row, values, proof[:-32]), *rest]),  # short
        (FraudReason.MISSING_OPENING, rest),
        (FraudReason.UNREQUESTED_OPENING, [*first, extra]),
    ]
    return [(reason, with_openings(job, openings)) for reason, openings in cases]


def wrong_product_job() -> VerifyJob:
    """A worker that commits to a wrong product (every entry off by one) and serves rows that
    match its commitment: every hash checks out, the entries do not."""
    binding = Binding(miner_hotkey=HOTKEY, worker_pubkey=PUBKEY, gpu_uuid=GPU)

    def plus_one(stage: int, product: np.ndarray) -> np.ndarray:
        return (product + 1).astype("<i4")

    cheat = run_reference(binding, SEED, PARAMS, transform=plus_one)
    job = job_for(cheat)
    openings = []
    for sample in job.samples:
        truth = recompute_rows(cheat, sample.stage, sample.rows)
        served = {r: plus_one(0, np.frombuffer(truth[r], dtype="<i4")).tobytes() for r in truth}
        openings += [
            (o.stage, o.row, o.values, b"".join(o.proof))
            for o in open_rows(cheat, sample.stage, sample.rows, values=served)
        ]
    return with_openings(job, openings)


# --------------------------------------------------------------------------- same verdicts


async def test_an_honest_reveal_verifies_in_the_pool_as_in_process(
    honest: ProverRun, verifier: VerifierPool
) -> None:
    job = job_for(honest)
    local = verify_job(job)
    pooled = await verifier.verify(job)
    assert local.verified and pooled.verified
    assert pooled.checked_entries == local.checked_entries == 3 * 6 * 4
    assert pooled.error() is None


async def test_every_kind_of_tampering_gets_the_same_reason_in_the_pool(
    honest: ProverRun, verifier: VerifierPool
) -> None:
    cases = [*tampered_jobs(job_for(honest)), (FraudReason.WRONG_ENTRY, wrong_product_job())]
    reports = await verifier.verify_all([job for _, job in cases])
    for (reason, job), pooled in zip(cases, reports, strict=True):
        local = verify_job(job)
        assert isinstance(pooled, VerifyReport)
        assert local.reason is reason, (reason, local)
        assert pooled.reason is reason and pooled.detail == local.detail
        assert not pooled.verified and pooled.checked_entries == 0


async def test_a_fraud_report_becomes_the_typed_error(
    honest: ProverRun, verifier: VerifierPool
) -> None:
    report = await verifier.verify(wrong_product_job())
    error = report.error()
    assert isinstance(error, VerificationFailed)
    assert error.reason is FraudReason.WRONG_ENTRY
    assert "exact value" in error.message
    assert judge(error) == (Outcome.FRAUD, "wrong_entry")


# --------------------------------------------------------------------------- crashes


def die(job: VerifyJob) -> VerifyReport:
    """A pool function that kills its process, as a segfault or the OOM killer would."""
    os._exit(13)


def explode(job: VerifyJob) -> VerifyReport:
    raise RuntimeError("a bug in the verifier")


async def test_a_dead_pool_process_is_excused_and_the_pool_recovers(honest: ProverRun) -> None:
    pool = VerifierPool(1, fn=die)
    try:
        with pytest.raises(TransientError) as info:
            await pool.verify(job_for(honest))
        assert judge(info.value) == (Outcome.EXCUSED, "transient")
        assert pool.crashes == 1
        pool.fn = verify_job  # the next job gets a fresh pool
        report = await pool.verify(job_for(honest))
        assert report.verified
    finally:
        pool.close()


async def test_a_crash_in_one_gpus_job_does_not_hide_the_others(honest: ProverRun) -> None:
    pool = VerifierPool(1, fn=explode)
    try:
        results = await pool.verify_all([job_for(honest), job_for(honest, 2)])
    finally:
        pool.close()
    crashes = [r for r in results if isinstance(r, TransientError)]
    assert len(crashes) == len(results) == 2
    assert [judge(r)[0] for r in crashes] == [Outcome.EXCUSED, Outcome.EXCUSED]


# --------------------------------------------------------------------------- error -> verdict


def all_error_classes() -> list[type[errors.ByteLeapError]]:
    """Every class of the core's error tree (``byteleap.*``): what a challenge can meet.

    Daemon-side refinements (e.g. the renter API's lease refusals) are left out: they never
    reach a challenge, and whether they are imported depends on which tests ran before."""
    seen: list[type[errors.ByteLeapError]] = []
    pending: list[type[errors.ByteLeapError]] = [errors.ByteLeapError]
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("byteleap."):
            seen.append(cls)
        pending.extend(cls.__subclasses__())
    return seen


def instance(cls: type[errors.ByteLeapError]) -> errors.ByteLeapError:
    if cls is errors.VerificationFailed:
        return cls(FraudReason.BAD_SIGNATURE)
    if cls is errors.MessageTooLarge:
        return cls(10, 5)
    if cls is errors.UnsupportedVersion:
        return cls(9, 1)
    if cls is errors.ConfigError:
        return cls("bad", key="x")
    if cls.__module__ == "byteleap.chain" and cls.__name__ == "NotRegistered":
        return cls("5Abc", 128)  # type: ignore[call-arg]
    return cls("boom")


EXPECTED_AT_DISPATCH = {
    "FraudError": Outcome.FRAUD,
    "VerificationFailed": Outcome.FRAUD,
    "PeerTimeout": Outcome.TIMEOUT,
    "UnexplainedBusy": Outcome.TIMEOUT,  # busy without a known lease (SPEC 5.5)
    "WorkerFailure": Outcome.TIMEOUT,
}


def test_every_error_class_maps_to_its_verdict() -> None:
    classes = all_error_classes()
    assert {c.__name__ for c in classes} >= {
        "LinkError",
        "PeerUnavailable",
        "MalformedMessage",
        "StorageError",
        "ChainError",
        "Unauthenticated",
    }
    for cls in classes:
        exc = instance(cls)
        outcome, failure = judge(exc)
        assert outcome is EXPECTED_AT_DISPATCH.get(cls.__name__, Outcome.EXCUSED), cls
        if isinstance(exc, VerificationFailed):
            assert failure == "bad_signature"
        else:
            assert failure == exc.code
        # after a valid commit, only fraud stays fraud; every other failure is a missed reveal
        outcome, failure = judge(exc, reveal=True)
        if isinstance(exc, errors.FraudError):
            assert outcome is Outcome.FRAUD
        else:
            assert (outcome, failure) == (Outcome.TIMEOUT, "timeout"), cls
            assert detail_of(exc, reveal=True).startswith(
                "no valid reveal" if not isinstance(exc, errors.PeerTimeout) else "boom"
            )


def test_the_decided_cases_from_the_design() -> None:
    # busy or leased, and a link that fails at dispatch: excused
    assert judge(errors.PeerUnavailable(leased=True)) == (Outcome.EXCUSED, "unavailable")
    assert judge(errors.LinkError("refused")) == (Outcome.EXCUSED, "link")
    # a miner answering "link" to the reveal after a valid commit: a missed challenge
    assert judge(errors.LinkError("miner: link"), reveal=True) == (Outcome.TIMEOUT, "timeout")
    assert judge(errors.MalformedMessage("garbage"), reveal=True)[0] is Outcome.TIMEOUT
    # our own bugs are never blamed on a peer, before or after the commit
    assert judge(RuntimeError("bug")) == (Outcome.EXCUSED, "internal")
    assert judge(KeyError("bug"), reveal=True) == (Outcome.EXCUSED, "internal")
    assert detail_of(RuntimeError("bug")).startswith("internal error")
    assert judge(None) == (Outcome.VERIFIED, None)
