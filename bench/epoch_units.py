"""The epoch benchmark's per-unit costs: checking a commit, recording and closing, a reveal,
handing a VerifyJob to the pool and verifying openings, each measured on samples."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import pickle
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import bittensor as bt
import numpy as np

from bench.epoch_meter import Meter
from bench.epoch_world import (
    CHUNK,
    REVEAL_ID,
    EpochMiner,
    EpochSettings,
    EpochStub,
)
from byteleap.challenge.generate import matrix_a, matrix_b, stage_key
from byteleap.challenge.merkle import build_levels, leaf_hash, proof
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import canonical_product
from byteleap.challenge.verify import StageSample, draw_sample
from byteleap.crypto import WorkerKey
from byteleap.errors import Outcome
from byteleap.protocol import codec
from byteleap.protocol.miner_api.challenges import (
    ChallengeRequest,
    ChallengeResponse,
    OpeningsRequest,
    OpeningsResponse,
    evidence_payload,
)
from byteleap.protocol.stream import RecordReader, encode_record
from byteleap.protocol.worker_link.challenges import GpuCommit, OpeningRequest, RowOpening
from byteleap.sessions.round_checks import check_commits
from byteleap.sessions.round_planner import EpochPlan, PlannedChallenge, deadline_ms
from byteleap.sessions.round_records import VerifyJob
from neurons.common.miner_client import MinerClient
from neurons.validator.challenger import Challenger
from neurons.validator.store import ChallengeOpen, ChallengeVerdict, SqlStore
from neurons.validator.verification import verify_job
from neurons.validator.verify_budget import DEFAULT_VERIFY_S, VerifyBudget


def unit_planned(planned: PlannedChallenge, params: ChallengeParams | None) -> PlannedChallenge:
    if params is None:
        return planned
    return replace(planned, sizing=replace(planned.sizing, params=params))


def commit_of(
    planned: PlannedChallenge,
    opened: ChallengeOpen,
    key: WorkerKey,
    miner: EpochMiner,
    validator_hotkey: str,
    rng: random.Random,
) -> tuple[ChallengeRequest, bytes]:
    """One worker's commit record as a miner streams it (real signatures, random roots)."""
    params = planned.params
    gpus = [
        GpuCommit.create(key, opened.challenge_id, uuid, rng.randbytes(32 * params.stages))
        for uuid in planned.gpu_uuids
    ]
    payload = evidence_payload(
        challenge_id=opened.challenge_id, validator_hotkey=validator_hotkey,
        miner_hotkey=miner.hotkey, worker_pubkey=key.public_key, seed=opened.seed,
        params=params, gpus=gpus,
    )  # fmt: skip
    response = ChallengeResponse(
        challenge_id=opened.challenge_id, miner_hotkey=miner.hotkey,
        worker_pubkey=key.public_key.hex(), gpus=gpus,
        miner_signature=bytes(miner.keypair.sign(payload)),
    )  # fmt: skip
    request = ChallengeRequest(
        challenge_id=opened.challenge_id, worker_pubkey=key.public_key.hex(),
        gpu_uuids=list(planned.gpu_uuids), seed=opened.seed, params=params,
        deadline_ms=deadline_ms(planned.sizing),
    )  # fmt: skip
    return request, encode_record(response)


def check_commit(
    challenger: Challenger,
    client: MinerClient,
    planned: PlannedChallenge,
    request: ChallengeRequest,
    record: bytes,
) -> None:
    """What the validator does with one commit record: decode it from the stream, check the
    miner's signature (``MinerClient.epoch``), then every GPU's (``check_commits``)."""
    reader = RecordReader(client.max_response_bytes, 1)
    records = []
    for at in range(0, len(record), CHUNK):
        records += reader.feed(record[at : at + CHUNK])
    reader.finish()
    (response,) = records
    assert isinstance(response, ChallengeResponse)
    client.check_challenge_response(request, response)
    verdicts, roots, _ = check_commits(
        planned,
        request.challenge_id,
        request.seed,
        response,
        planned.sizing.expected_s,
        impossible_factor=challenger.section.impossible_throughput_factor,
        now=challenger.wall_clock(),
    )
    assert not verdicts and len(roots) == len(planned.gpu_uuids), verdicts


def honest_openings(
    binding: Binding,
    seed: bytes,
    params: ChallengeParams,
    samples: Sequence[StageSample],
    rng: random.Random,
) -> tuple[tuple[bytes, ...], list[tuple[int, int, bytes, bytes]]]:
    """Roots and openings whose sampled rows are honest and whose other rows were never
    computed: the verifier cannot tell (that is the point of sampling), and its cost does not
    depend on them. Stages in order, so a sampled stage keys off its final previous root."""
    roots = [rng.randbytes(32) for _ in range(params.stages)]
    openings = []
    for sample in samples:
        t = sample.stage
        key = stage_key(seed, binding, t, roots[t - 1] if t else None)
        b = matrix_b(np, key, params)
        a = np.vstack([matrix_a(np, key, params, range(r, r + 1)) for r in sample.rows])
        product = canonical_product(a, b)
        del b
        leaves = [rng.randbytes(32) for _ in range(params.m)]
        for i, row in enumerate(sample.rows):
            leaves[row] = leaf_hash(t, row, product[i].tobytes())
        levels = build_levels(leaves)
        roots[t] = levels[-1][0]
        openings += [
            (t, row, product[i].tobytes(), b"".join(proof(levels, row)))
            for i, row in enumerate(sample.rows)
        ]
    return tuple(roots), openings


def jobs_of(
    planned: PlannedChallenge,
    seed: bytes,
    roots: tuple[bytes, ...],
    samples: Sequence[StageSample],
    revealed: OpeningsResponse,
    entries: bool,
) -> list[VerifyJob]:
    """The pool's jobs for one worker's reveal, built as ``Challenger._verify`` builds them."""
    return [
        VerifyJob(
            miner_hotkey=planned.miner_hotkey,
            worker_pubkey=bytes.fromhex(planned.worker_pubkey),
            gpu_uuid=uuid,
            seed=seed,
            params=planned.params,
            roots=roots,
            samples=tuple(samples),
            openings=tuple(
                (o.stage, o.row, o.values, o.proof) for o in revealed.openings if o.gpu_uuid == uuid
            ),
            entries=entries,
        )
        for uuid in planned.gpu_uuids
    ]


def one_core(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn`` pinned to one core."""
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    walls, cpus = [], []
    try:
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    finally:
        os.sched_setaffinity(0, affinity)
    return statistics.median(walls), statistics.median(cpus)


async def per_call(
    meter: Meter, calls: Sequence[Callable[[], Any]], in_flight: int
) -> dict[str, float | None]:
    """``calls`` with ``in_flight`` at once: seconds per call (wall, ours, the database's)."""
    gate = asyncio.Semaphore(in_flight)

    async def one(call: Callable[[], Any]) -> None:
        async with gate:
            await call()

    async with meter.measure() as cost:
        await asyncio.gather(*(one(c) for c in calls))
    n = max(1, len(calls))
    return {
        "wall_ms": cost.wall_s / n * 1e3,
        "cpu_ms": cost.cpu_s / n * 1e3,
        "db_cpu_ms": None if cost.db_cpu_s is None else cost.db_cpu_s / n * 1e3,
    }


async def unit_costs(
    settings: EpochSettings,
    plan: EpochPlan,
    opened: Sequence[ChallengeOpen],
    store: SqlStore | None,
    meter: Meter,
    stub: EpochStub,
    reveal_path: Path,
    wallet: bt.Wallet,
    miners: Sequence[EpochMiner],
) -> dict[str, Any]:
    section = settings.section
    rng = random.Random(7)
    by_worker = {(o.miner_hotkey, o.worker_pubkey): o for o in opened}
    by_hotkey = {m.hotkey: m for m in miners}
    validator_hotkey = str(wallet.hotkey.ss58_address)
    sample = list(plan.challenges[: max(settings.commit_sample, settings.store_sample)])
    params = unit_planned(sample[0], settings.unit_params).params
    out: dict[str, Any] = {
        "m": params.m, "n": params.n, "k": params.k, "stages": params.stages,
        "gpus_per_worker": len(sample[0].gpu_uuids),
        "sample_stages": section.sampling.stages, "sample_rows": section.sampling.rows,
        "sample_columns": section.sampling.columns,
    }  # fmt: skip

    # --- commit records: decode, the miner's signature, each GPU's checks
    challenger = Challenger(
        store=None,  # type: ignore[arg-type]
        connect=None,  # type: ignore[arg-type]
        verifier=None,  # type: ignore[arg-type]
        section=section,
        wall_clock=lambda: datetime.now(UTC),
    )
    clients: dict[str, MinerClient] = {}
    records = []
    for planned in sample[: settings.commit_sample]:
        key = WorkerKey.from_seed(hashlib.sha256(planned.worker_pubkey.encode()).digest())
        signed = unit_planned(replace(planned, worker_pubkey=key.public_key.hex()), params)
        miner = by_hotkey[planned.miner_hotkey]
        if miner.hotkey not in clients:
            clients[miner.hotkey] = MinerClient(wallet, miner.hotkey, stub.url)
        request, record = commit_of(
            signed, by_worker[planned.key], key, miner, validator_hotkey, rng
        )
        records.append((clients[miner.hotkey], signed, request, record))
    wall, cpu = time.perf_counter(), time.process_time()
    for client, signed, request, record in records:
        check_commit(challenger, client, signed, request, record)
    n = len(records)
    out.update(
        commit_sample=n, commit_record_bytes=statistics.mean(len(r[3]) for r in records),
        commit_check_wall_ms=(time.perf_counter() - wall) / n * 1e3,
        commit_check_cpu_ms=(time.process_time() - cpu) / n * 1e3,
    )  # fmt: skip
    for client in clients.values():
        await client.aclose()

    # --- record_commit and close_challenges on PostgreSQL, one worker a call
    out["store"] = None
    if store is not None:
        half = max(1, min(settings.store_sample, len(sample)) // 2)
        chosen = [by_worker[p.key] for p in sample[: 2 * half]]
        shared = [rng.randbytes(32) for _ in range(chosen[0].params.stages)]
        roots_of = [(o, dict.fromkeys(o.gpu_uuids, shared)) for o in chosen]
        committed_at = datetime.now(UTC)
        figures: dict[str, Any] = {"sample": 2 * half}
        pool = store.engine.pool.size()  # type: ignore[attr-defined]
        figures["pool_size"] = pool
        for label, part, limit in (("one", roots_of[:half], 1), ("pool", roots_of[half:], pool)):
            figures[f"record_{label}"] = await per_call(
                meter,
                [functools.partial(store.record_commit, o.challenge_id, committed_at, r)
                 for o, r in part],
                limit,
            )  # fmt: skip
        closed_at = datetime.now(UTC)

        def verdicts(o: ChallengeOpen) -> list[ChallengeVerdict]:
            return [
                ChallengeVerdict(o.challenge_id, u, closed_at, Outcome.VERIFIED,
                                 throughput_flops=3e14, elapsed_s=5.0, verify_s=0.03,
                                 checked_entries=256)
                for u in o.gpu_uuids
            ]  # fmt: skip

        async def close(o: ChallengeOpen) -> None:
            await store.close_challenges(verdicts(o))

        for label, part, limit in (("one", roots_of[:half], 1), ("pool", roots_of[half:], pool)):
            figures[f"close_{label}"] = await per_call(
                meter, [functools.partial(close, o) for o, _ in part], limit
            )
        out["store"] = figures

    # --- one reveal per worker over HTTP, and the exact / Merkle-only checks per GPU
    planned = unit_planned(sample[0], settings.unit_params)
    item = by_worker[sample[0].key]
    samples = draw_sample(params, section.sampling, rng)
    binding = Binding(
        miner_hotkey=planned.miner_hotkey, worker_pubkey=bytes.fromhex(planned.worker_pubkey),
        gpu_uuid=planned.gpu_uuids[0],
    )  # fmt: skip
    built = time.perf_counter()
    roots, honest = honest_openings(binding, item.seed, params, samples, rng)
    out["honest_build_s"] = time.perf_counter() - built
    openings = [
        RowOpening(gpu_uuid=uuid, stage=t, row=row, values=values, proof=path)
        for uuid in planned.gpu_uuids
        for t, row, values, path in honest
    ]
    body = codec.encode(OpeningsResponse(challenge_id=REVEAL_ID, openings=openings))
    await asyncio.to_thread(reveal_path.write_bytes, body)
    reveal_request = OpeningsRequest(
        challenge_id=REVEAL_ID, worker_pubkey=planned.worker_pubkey,
        openings=[OpeningRequest(gpu_uuid=uuid, stage=s.stage, rows=list(s.rows))
                  for uuid in planned.gpu_uuids for s in samples],
    )  # fmt: skip
    out["reveal_response_bytes"] = len(body)
    out["reveal_request_bytes"] = len(codec.encode(reveal_request))
    revealed = None
    async with MinerClient(
        wallet, planned.miner_hotkey, stub.url, timeout=section.reveal_timeout_s
    ) as client:
        await client.reveal(reveal_request)  # the connection, once
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(settings.reveal_sample):
            revealed = await client.reveal(reveal_request)
        n = settings.reveal_sample
        out.update(
            reveal_sample=n, reveal_wall_ms=(time.perf_counter() - wall) / n * 1e3,
            reveal_cpu_ms=(time.process_time() - cpu) / n * 1e3,
        )  # fmt: skip
    await stub.report()  # forget the reveals
    assert revealed is not None
    assert len(revealed.openings) == len(planned.gpu_uuids) * sum(len(s.rows) for s in samples)

    # handing the jobs to the pool: pickled here, unpickled in the pool process
    jobs = jobs_of(planned, item.seed, roots, samples, revealed, entries=False)
    frames = [ForkingPickler.dumps(job) for job in jobs]
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(3):
        frames = [ForkingPickler.dumps(job) for job in jobs]
    out["pickle_ms"] = (time.process_time() - cpu) / (3 * len(jobs)) * 1e3
    cpu = time.process_time()
    for _ in range(3):
        for frame in frames:
            pickle.loads(frame)
    out["unpickle_ms"] = (time.process_time() - cpu) / (3 * len(jobs)) * 1e3
    out["job_bytes"] = statistics.mean(len(f) for f in frames)

    exact = replace(jobs[0], entries=True)
    first = verify_job(exact)
    assert first.verified and first.checked_entries > 0, first
    assert all(verify_job(job).verified for job in jobs)  # Merkle paths of every GPU
    repeats = settings.verify_repeats
    out["exact_wall_ms"], out["exact_cpu_ms"] = (
        x * 1e3 for x in one_core(lambda: verify_job(exact), repeats)
    )
    out["merkle_wall_ms"], out["merkle_cpu_ms"] = (
        x * 1e3 for x in one_core(lambda: verify_job(jobs[0]), repeats)
    )
    out["checked_entries"] = first.checked_entries
    out["verify_repeats"] = repeats

    budget = VerifyBudget(
        processes=section.verifier_processes, epoch_s=section.interval_s,
        utilization=section.verify_utilization,
    )  # fmt: skip
    out["budget"] = {
        "processes": budget.processes,
        "epoch_s": budget.epoch_s,
        "utilization": budget.utilization,
        "default_verify_ms": DEFAULT_VERIFY_S * 1e3,
        "default_capacity": budget.capacity,
        "default_fraction": budget.fraction(settings.gpus),
    }
    budget.mean_verify_s = out["exact_wall_ms"] / 1e3  # what observe() converges to
    out["budget"].update(capacity=budget.capacity, fraction=budget.fraction(settings.gpus))
    return out
