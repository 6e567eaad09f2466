"""Sampling and exact verification of a committed challenge (SPEC 4.4).

The validator draws what to open only after the commitment has arrived, from randomness the caller
passes in (``random.SystemRandom()`` in production, a seeded ``random.Random`` in tests). The worker
learns which rows to reveal but never which entries of them are checked.

Verification is exact: any difference in any bit is fraud, with a typed reason. There is no
tolerance to tune and no threshold to game. The cost is O(r * s * e * k) against the worker's
O(R * m * n * k).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from byteleap.challenge.generate import a_rows_exact, b_columns_exact, stage_key
from byteleap.challenge.merkle import HASH_BYTES, leaf_hash, root_from_proof
from byteleap.challenge.params import Binding, ChallengeParams, SamplingParams
from byteleap.challenge.reference import OpenedRow
from byteleap.errors import FraudReason, VerificationFailed


@dataclass(frozen=True)
class StageSample:
    """What the validator opens in one stage: ``rows`` (sent to the worker) and, per row, the
    ``columns`` it checks (kept to itself)."""

    stage: int
    rows: tuple[int, ...]
    columns: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Commitment:
    """Everything the worker committed to for one GPU, plus what the validator sent it."""

    binding: Binding
    seed: bytes
    params: ChallengeParams
    roots: tuple[bytes, ...]


def draw_sample(
    params: ChallengeParams, sampling: SamplingParams, rng: random.Random
) -> tuple[StageSample, ...]:
    """Pick ``r`` distinct stages, ``s`` distinct rows in each and ``e`` distinct columns per row.

    Counts larger than what exists are clamped (a 2-stage challenge opens both stages)."""
    stages = sorted(rng.sample(range(params.stages), min(sampling.stages, params.stages)))
    out = []
    for stage in stages:
        rows = tuple(sorted(rng.sample(range(params.m), min(sampling.rows, params.m))))
        columns = tuple(
            tuple(sorted(rng.sample(range(params.n), min(sampling.columns, params.n))))
            for _ in rows
        )
        out.append(StageSample(stage=stage, rows=rows, columns=columns))
    return tuple(out)


def check_shape(commitment: Commitment) -> None:
    roots = commitment.roots
    if len(roots) != commitment.params.stages or any(len(r) != HASH_BYTES for r in roots):
        raise VerificationFailed(
            FraudReason.BAD_COMMIT_SHAPE,
            f"expected {commitment.params.stages} roots of {HASH_BYTES} bytes",
        )


def _index_openings(
    samples: Sequence[StageSample], openings: Iterable[OpenedRow]
) -> dict[tuple[int, int], OpenedRow]:
    wanted = {(s.stage, row) for s in samples for row in s.rows}
    got: dict[tuple[int, int], OpenedRow] = {}
    for opening in openings:
        place = (opening.stage, opening.row)
        if place not in wanted or place in got:
            raise VerificationFailed(
                FraudReason.UNREQUESTED_OPENING, stage=opening.stage, row=opening.row
            )
        got[place] = opening
    for stage, row in sorted(wanted - got.keys()):
        raise VerificationFailed(FraudReason.MISSING_OPENING, stage=stage, row=row)
    return got


def verify_openings(
    commitment: Commitment,
    samples: Sequence[StageSample],
    openings: Iterable[OpenedRow],
    *,
    entries: bool = True,
) -> int:
    """Check every opening against the commitment; raise :class:`VerificationFailed` on the first
    defect. Returns the number of entries checked exactly.

    ``entries=False`` checks everything but the entries themselves: the openings are exactly the
    ones asked for, every row has its shape, every Merkle path leads to the committed root. That
    is hashing only (a few milliseconds), against the O(k) regeneration per entry of the exact
    check, and it already catches every commitment the worker cannot open (skipped stages,
    random roots). A large epoch runs it on the reveals it does not open exactly."""
    check_shape(commitment)
    params = commitment.params
    by_place = _index_openings(samples, openings)
    row_bytes = 4 * params.n
    checked = 0
    for sample in samples:
        t = sample.stage
        root = commitment.roots[t]
        values = []
        for row in sample.rows:
            opening = by_place[(t, row)]
            if len(opening.values) != row_bytes:
                raise VerificationFailed(
                    FraudReason.BAD_ROW_SHAPE,
                    f"{len(opening.values)} bytes instead of {row_bytes}",
                    stage=t,
                    row=row,
                )
            if len(opening.proof) != params.depth:
                raise VerificationFailed(
                    FraudReason.BAD_PROOF_LENGTH,
                    f"{len(opening.proof)} siblings instead of {params.depth}",
                    stage=t,
                    row=row,
                )
            leaf = leaf_hash(t, row, opening.values)
            if root_from_proof(leaf, row, opening.proof, params.depth) != root:
                raise VerificationFailed(FraudReason.BAD_PROOF, stage=t, row=row)
            values.append(np.frombuffer(opening.values, dtype="<i4"))
        if entries:
            checked += _check_entries(commitment, sample, values)
    return checked


def _check_entries(
    commitment: Commitment, sample: StageSample, values: list[np.ndarray[Any, Any]]
) -> int:
    t = sample.stage
    previous = commitment.roots[t - 1] if t > 0 else None
    key = stage_key(commitment.seed, commitment.binding, t, previous)
    params = commitment.params
    a = a_rows_exact(key, params, list(sample.rows))  # (s, k)
    cols = np.asarray(sample.columns, dtype=np.int64)  # (s, e)
    b = b_columns_exact(key, params, cols)  # (s, e, k)
    expected = np.einsum("sk,sek->se", a, b)
    claimed = np.take_along_axis(np.stack(values).astype(np.int64), cols, axis=1)
    bad = np.argwhere(expected != claimed)
    if bad.size:
        i, j = (int(x) for x in bad[0])
        raise VerificationFailed(
            FraudReason.WRONG_ENTRY,
            f"claimed {int(claimed[i, j])}, exact value {int(expected[i, j])}",
            stage=t,
            row=sample.rows[i],
            column=int(cols[i, j]),
        )
    return int(cols.size)


def verifier_operations(params: ChallengeParams, sampling: SamplingParams) -> int:
    """Arithmetic the verifier performs: entries generated plus multiply-adds, per challenge.

    Hashing (``s`` leaves and ``s * log2(m)`` nodes per stage) is tiny next to this and is left
    out; the benchmark measures the whole verifier in seconds anyway."""
    r = min(sampling.stages, params.stages)
    s = min(sampling.rows, params.m)
    e = min(sampling.columns, params.n)
    generated = r * s * (1 + e) * params.k
    multiply_adds = r * s * e * params.k
    return generated + 2 * multiply_adds
