"""Stage keys and counter-based matrix entries (SPEC 4.2).

Any single entry of any stage's matrices can be computed in O(1) from the stage key and its index,
which is what lets the validator check a handful of entries of a product it never builds.

The functions take the array module ``xp`` as an argument (``numpy`` here, ``cupy`` on a GPU host),
so the CuPy backend reuses exactly this code instead of a second implementation that could drift.
All arithmetic is on unsigned 64-bit integers and wraps mod 2**64, as the spec requires.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from concurrent.futures import Executor
from typing import Any

import numpy as np

from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.crypto import frame

STAGE_TAG = b"byteleap/stage/v1"
ZERO_ROOT = bytes(32)

MUL1 = 0xBF58476D1CE4E5B9
MUL2 = 0x94D049BB133111EB
B_OFFSET = 1 << 63

#: entries generated per pass; keeps the working set of the in-place passes inside the CPU caches
CHUNK = 1 << 16


def stage_key(seed: bytes, binding: Binding, stage: int, previous_root: bytes | None = None) -> int:
    """``key_t`` for stage ``t``: the first 8 bytes (little-endian) of a SHA-256 over the framed
    seed, miner hotkey, worker public key, GPU UUID, ``u32le(t)`` and ``root_{t-1}``."""
    if len(seed) != 32:
        raise ValueError("the challenge seed is exactly 32 bytes")
    prev = ZERO_ROOT if previous_root is None else previous_root
    if len(prev) != 32:
        raise ValueError("a Merkle root is exactly 32 bytes")
    digest = hashlib.sha256(
        frame(STAGE_TAG, seed, binding.miner_hotkey, binding.worker_pubkey, binding.gpu_uuid)
        + struct.pack("<I", stage)
        + prev
    ).digest()
    return int.from_bytes(digest[:8], "little")


def splitmix_entries(xp: Any, counters: Any, key: int, v: int) -> Any:
    """Map uint64 ``counters`` to entries in ``[-v, v]`` (as float32), consuming ``counters``.

    ``x = key ^ counter``, the splitmix64 finalizer, then the multiply-shift range reduction
    ``((x >> 32) * (2v + 1)) >> 32`` minus ``v``. The passes run in place to avoid temporaries.
    """
    u64 = xp.uint64
    x = counters
    x ^= u64(key)
    x ^= x >> u64(30)
    x *= u64(MUL1)
    x ^= x >> u64(27)
    x *= u64(MUL2)
    x ^= x >> u64(31)
    x >>= u64(32)
    x *= u64(2 * v + 1)
    x >>= u64(32)
    out = x.astype(xp.float32)
    out -= xp.float32(v)
    return out


def _fill_span(xp: Any, flat: Any, begin: int, end: int, start: int, key: int, v: int) -> None:
    step = CHUNK if xp is np else (end - begin) or 1
    for offset in range(begin, end, step):
        stop = min(end, offset + step)
        counters = xp.arange(start + offset, start + stop, dtype=xp.uint64)
        flat[offset:stop] = splitmix_entries(xp, counters, key, v)


def _fill(
    xp: Any, out: Any, start: int, key: int, v: int, pool: Executor | None = None, parts: int = 1
) -> None:
    """Fill the float32 array ``out`` (in row-major order) with entries for counters
    ``start, start + 1, ...``. With a ``pool``, ``parts`` contiguous spans are filled in parallel
    (NumPy releases the GIL inside its loops)."""
    flat = out.reshape(-1)
    total = flat.size
    if pool is None or parts <= 1 or total < 2 * CHUNK:
        _fill_span(xp, flat, 0, total, start, key, v)
        return
    bounds = [total * i // parts for i in range(parts + 1)]
    futures = [
        pool.submit(_fill_span, xp, flat, lo, hi, start, key, v)
        for lo, hi in itertools.pairwise(bounds)
    ]
    for future in futures:
        future.result()


def matrix_a(
    xp: Any,
    key: int,
    params: ChallengeParams,
    rows: range | None = None,
    *,
    out: Any = None,
    pool: Executor | None = None,
    parts: int = 1,
) -> Any:
    """Rows ``rows`` (default: all ``m``) of ``A_t`` as float32, shape ``(len(rows), k)``.

    ``A_t[i, l]`` uses counter ``i * k + l``. ``out`` may supply a buffer to reuse."""
    span = range(params.m) if rows is None else rows
    if span.step != 1:
        raise ValueError("row ranges must be contiguous")
    if out is None:
        out = xp.empty((len(span), params.k), dtype=xp.float32)
    _fill(xp, out, span.start * params.k, key, params.v, pool, parts)
    return out


def matrix_b(
    xp: Any,
    key: int,
    params: ChallengeParams,
    *,
    out: Any = None,
    pool: Executor | None = None,
    parts: int = 1,
) -> Any:
    """All of ``B_t`` as float32, shape ``(k, n)``. ``B_t[l, j]`` uses counter
    ``2**63 ^ (l * n + j)``; since ``l * n + j < 2**63`` that is ``2**63 + l * n + j``."""
    if out is None:
        out = xp.empty((params.k, params.n), dtype=xp.float32)
    _fill(xp, out, 0, key ^ B_OFFSET, params.v, pool, parts)
    return out


def a_rows_exact(key: int, params: ChallengeParams, rows: list[int]) -> np.ndarray[Any, Any]:
    """Selected rows of ``A_t`` as int64, shape ``(len(rows), k)``: the verifier's O(k) per row."""
    idx = np.asarray(rows, dtype=np.uint64)[:, None] * np.uint64(params.k)
    counters = idx + np.arange(params.k, dtype=np.uint64)[None, :]
    rows_out: np.ndarray[Any, Any] = splitmix_entries(np, counters, key, params.v).astype(np.int64)
    return rows_out


def b_columns_exact(
    key: int, params: ChallengeParams, columns: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """Columns of ``B_t`` as int64 with shape ``columns.shape + (k,)``: O(k) per column."""
    cols = np.asarray(columns, dtype=np.uint64)[..., None]
    counters = np.arange(params.k, dtype=np.uint64) * np.uint64(params.n) + cols
    cols_out: np.ndarray[Any, Any] = splitmix_entries(np, counters, key ^ B_OFFSET, params.v)
    return cols_out.astype(np.int64)
