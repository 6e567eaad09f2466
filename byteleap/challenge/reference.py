"""The NumPy reference prover: what an honest worker computes, written as plainly as possible.

It is the CPU worker's backend, the operator's tool for checking a disputed challenge
(``byteleap challenge reference``) and the oracle every other backend is tested against.

Memory follows SPEC 4.3: a run keeps only each stage's leaf hashes. Opening rows later recomputes
just those rows of the stage (``A_t[rows] @ B_t``), which costs far less than the stage's GEMM.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from byteleap.aliases import Clock
from byteleap.challenge.generate import matrix_a, matrix_b, stage_key
from byteleap.challenge.merkle import build_levels, leaf_hash, proof
from byteleap.challenge.params import Binding, ChallengeParams

#: ``transform(stage, product) -> product``: lets tests and the devnet's cheaters tamper with a
#: product before it is committed; honest runs leave it None
Transform = Callable[[int, np.ndarray[Any, Any]], np.ndarray[Any, Any]]


@dataclass(frozen=True)
class OpenedRow:
    """One revealed row: its int32 little-endian values and the Merkle path to the stage root."""

    stage: int
    row: int
    values: bytes
    proof: tuple[bytes, ...]


@dataclass
class ProverRun:
    """A finished challenge for one GPU: the committed roots and what is needed to open rows."""

    binding: Binding
    seed: bytes
    params: ChallengeParams
    roots: list[bytes] = field(default_factory=list)
    leaves: list[list[bytes]] = field(default_factory=list)
    stage_seconds: list[float] = field(default_factory=list)

    def key(self, stage: int) -> int:
        previous = self.roots[stage - 1] if stage > 0 else None
        return stage_key(self.seed, self.binding, stage, previous)


def canonical_product(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``a @ b`` in float32, canonicalised as little-endian int32.

    Exact because every partial sum is an integer below 2**24 (``k * v * v < 2**24``).
    """
    return np.asarray(a @ b).astype("<i4")


def row_leaves(stage: int, product: np.ndarray[Any, Any], first_row: int = 0) -> list[bytes]:
    data = np.ascontiguousarray(product, dtype="<i4")
    return [leaf_hash(stage, first_row + i, data[i].tobytes()) for i in range(data.shape[0])]


class Workspace:
    """Buffers for one stage, reused by every stage of a run (and across runs of the same shape),
    so that the stage loop does not pay for fresh allocations and page faults each time."""

    def __init__(self, params: ChallengeParams) -> None:
        self.params = params
        self.a = np.empty((params.m, params.k), dtype=np.float32)
        self.b = np.empty((params.k, params.n), dtype=np.float32)
        self.c = np.empty((params.m, params.n), dtype=np.float32)
        self.product = np.empty((params.m, params.n), dtype="<i4")

    def fits(self, params: ChallengeParams) -> bool:
        p = self.params
        return (p.m, p.n, p.k) == (params.m, params.n, params.k)


def compute_stage(
    stage: int,
    key: int,
    workspace: Workspace,
    pool: Executor | None = None,
    parts: int = 1,
) -> tuple[np.ndarray[Any, Any], list[bytes]]:
    """One stage: generate ``A_t`` and ``B_t``, multiply, canonicalise, hash every row.

    Returns the int32 product (a view of the workspace, overwritten by the next stage) and the
    leaf hashes. With a thread pool, generation and hashing are split over ``parts`` threads;
    the GEMM is already multi-threaded by BLAS."""
    params = workspace.params
    matrix_a(np, key, params, out=workspace.a, pool=pool, parts=parts)
    matrix_b(np, key, params, out=workspace.b, pool=pool, parts=parts)
    np.matmul(workspace.a, workspace.b, out=workspace.c)
    np.copyto(workspace.product, workspace.c, casting="unsafe")  # exact: integers below 2**24
    product = workspace.product
    if pool is None or parts <= 1:
        return product, row_leaves(stage, product)
    bounds = [params.m * i // parts for i in range(parts + 1)]
    futures = [
        pool.submit(row_leaves, stage, product[lo:hi], lo) for lo, hi in itertools.pairwise(bounds)
    ]
    leaves: list[bytes] = []
    for future in futures:
        leaves += future.result()
    return product, leaves


def run_reference(
    binding: Binding,
    seed: bytes,
    params: ChallengeParams,
    *,
    clock: Clock | None = None,
    transform: Transform | None = None,
    threads: int = 1,
    workspace: Workspace | None = None,
) -> ProverRun:
    """Compute every stage in order, each keyed by the previous stage's root."""
    run = ProverRun(binding=binding, seed=seed, params=params)
    space = workspace if workspace is not None and workspace.fits(params) else Workspace(params)
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        for stage in range(params.stages):
            started = clock() if clock else 0.0
            product, leaves = compute_stage(stage, run.key(stage), space, pool, threads)
            if transform is not None:
                product = transform(stage, product)
                leaves = row_leaves(stage, product)
            run.leaves.append(leaves)
            run.roots.append(build_levels(leaves)[-1][0])
            run.stage_seconds.append((clock() - started) if clock else 0.0)
    finally:
        if pool is not None:
            pool.shutdown()
    return run


def recompute_rows(run: ProverRun, stage: int, rows: Sequence[int]) -> dict[int, bytes]:
    """Values of the requested rows of stage ``stage``, recomputed from the stage key."""
    key = run.key(stage)
    b = matrix_b(np, key, run.params)
    if not rows:
        return {}
    a = np.vstack([matrix_a(np, key, run.params, range(row, row + 1)) for row in rows])
    product = canonical_product(a, b)
    return {row: product[i].tobytes() for i, row in enumerate(rows)}


def open_rows(
    run: ProverRun,
    stage: int,
    rows: Sequence[int],
    *,
    values: dict[int, bytes] | None = None,
) -> list[OpenedRow]:
    """Openings for ``rows`` of ``stage``. ``values`` may supply the rows (a GPU backend recomputes
    them on the device); by default they are recomputed here."""
    if not 0 <= stage < len(run.roots):
        raise IndexError(f"stage {stage} was not committed")
    row_values = values if values is not None else recompute_rows(run, stage, rows)
    levels = build_levels(run.leaves[stage])
    return [OpenedRow(stage, row, row_values[row], proof(levels, row)) for row in rows]
