"""The validator-store benchmark's epoch: opening, recording and closing one challenge epoch's
rows in the store under test, and its table."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.validator_store_fill import (
    CONCURRENCY,
    MODEL,
    NOW,
    gather_limited,
    hotkey,
    pubkey,
    timed,
    wipe,
)
from byteleap.challenge.params import GPU_DEFAULT
from byteleap.errors import Outcome
from neurons.validator.store import (
    ChallengeOpen,
    ChallengeVerdict,
    SqlStore,
    VerifiedSample,
    open_store,
)

console = Console()


async def fill_epoch_workers(store: SqlStore, miners: int, workers: int) -> None:
    """``miners`` miners and ``workers`` workers (named as :func:`hotkey` / :func:`pubkey`), so
    that each epoch's ``last_challenge_at`` update finds its rows."""
    now = f"'{NOW.isoformat()}'::timestamptz"
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql(
            f"""INSERT INTO miners (hotkey, uid, coldkey, stake, validator_permit, endpoint,
                    registered, first_synced, last_synced)
                SELECT '5Bench' || lpad(i::text, 5, '0'), i, 'cold' || i, 100, false, NULL,
                    true, {now}, {now}
                FROM generate_series(0, {miners - 1}) AS i"""
        )
        await conn.exec_driver_sql(
            f"""INSERT INTO workers (miner_hotkey, worker_pubkey, state, online, first_seen,
                    last_seen)
                SELECT '5Bench' || lpad((i % {miners})::text, 5, '0'), lpad(to_hex(i), 64, '0'),
                    'idle', true, {now}, {now}
                FROM generate_series(0, {workers - 1}) AS i"""
        )
    async with store.engine.connect() as conn:
        await conn.exec_driver_sql("ANALYZE")
        await conn.commit()


def epoch_challenges(
    epoch: int, miners: int, workers: int, gpus: int, at: datetime
) -> list[ChallengeOpen]:
    """One challenge per worker, every one of its GPUs in it."""
    out = []
    for w in range(workers):
        uuids = tuple(f"GPU-{w:06x}-{g}" for g in range(gpus))
        out.append(
            ChallengeOpen(
                f"epoch{epoch}-{w}", hotkey(w % miners), pubkey(w), uuids,
                dict.fromkeys(uuids, MODEL), GPU_DEFAULT, bytes(32), at,
                at + timedelta(seconds=30),
            )
        )  # fmt: skip
    return out


def worker_verdicts(challenge: ChallengeOpen, at: datetime) -> list[ChallengeVerdict]:
    return [
        ChallengeVerdict(
            challenge.challenge_id, uuid, at, Outcome.VERIFIED, throughput_flops=4e14,
            elapsed_s=9.5, verify_s=0.02, checked_entries=512,
        )
        for uuid in challenge.gpu_uuids
    ]  # fmt: skip


async def epoch_bench(url: str, args: Any) -> dict[str, Any]:
    """Open two epochs in one call each, then close samples of the first epoch per worker."""
    workers, gpus, sample = args.epoch_workers, args.epoch_gpus, args.epoch_close_sample
    sample = min(sample, workers // 2)
    store = await open_store(url, auto_upgrade=True)
    try:
        await wipe(store)
        await fill_epoch_workers(store, args.miners, workers)
        out: dict[str, Any] = {"workers": workers, "gpus": gpus, "rows": workers * gpus}
        epochs = []
        for e in (1, 2):
            at = NOW + timedelta(minutes=10 * e)
            challenges = epoch_challenges(e, args.miners, workers, gpus, at)
            out[f"open_{e}_s"], _ = await timed(partial(store.open_challenges, challenges))
            epochs.append(challenges)
        closed_at = NOW + timedelta(minutes=11)
        first = epochs[0]
        for label, limit, chosen in (
            ("sequential", 1, first[:sample]),
            ("concurrent", CONCURRENCY, first[sample : 2 * sample]),
        ):
            calls = [partial(store.close_challenges, worker_verdicts(c, closed_at)) for c in chosen]
            t, _ = await timed(partial(gather_limited, calls, limit))
            out[f"close_{label}_rows_s"] = len(chosen) * gpus / t
        out["close_sample"] = sample
        t, samples = await timed(lambda: store.verified_throughputs(NOW))
        assert len(samples) == 2 * sample * gpus and isinstance(samples[0], VerifiedSample)
        out["verified_throughputs_s"] = t
        out["verified_samples"] = len(samples)
    finally:
        await store.close()
    for e in (1, 2):
        out[f"open_{e}_rows_s"] = out["rows"] / out[f"open_{e}_s"]
    for label in ("sequential", "concurrent"):
        out[f"close_{label}_epoch_s"] = out["rows"] / out[f"close_{label}_rows_s"]
    return out


def report_epoch(r: dict[str, Any]) -> None:
    table = Table(title=f"PostgreSQL epoch: {r['workers']:,} workers x {r['gpus']} GPUs")
    table.add_column("measurement")
    table.add_column("rows/s", justify="right")
    table.add_column("seconds", justify="right")
    for e, what in ((1, "empty table"), (2, "on the first epoch's rows")):
        table.add_row(
            f"open_challenges, {r['rows']:,} rows in one call ({what})",
            f"{r[f'open_{e}_rows_s']:,.0f}", f"{r[f'open_{e}_s']:.2f}",
        )  # fmt: skip
    for label, how in (
        ("sequential", "1 call at a time"),
        ("concurrent", f"{CONCURRENCY} in flight"),
    ):
        table.add_row(
            f"close_challenges, {r['gpus']} verdicts a call, {r['close_sample']:,} workers "
            f"({how}); seconds for the whole epoch",
            f"{r[f'close_{label}_rows_s']:,.0f}", f"{r[f'close_{label}_epoch_s']:.1f}",
        )  # fmt: skip
    table.add_row(
        f"verified_throughputs ({r['verified_samples']:,} samples)",
        "", f"{r['verified_throughputs_s']:.2f}",
    )  # fmt: skip
    console.print(table)
