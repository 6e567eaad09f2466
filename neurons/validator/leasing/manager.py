"""The lease lifecycle on the validator: start, receipts, extension and every way a lease ends.

:class:`LeaseManager` is what the renter API calls, and :meth:`LeaseManager.tick` is the body of
the daemon's lease loop. State lives in the database (:class:`LeaseStore`); the only state kept
in memory is a receipt the miner has not countersigned yet (retried with the same bytes, so a
lost answer never turns into two different receipts with one ``seq``).

**Start.** The request is matched (:mod:`.matching`) and checked against the renter's spending
limit under a lock (two requests never get the same worker), a ``pending`` row is written, and
``lease_start`` goes to the miner. The miner is asked to hold the lease until the longest
duration the validator allows (``created + leases.max_duration_hours``), not the renter's end:
the miner protocol has no "extend" message, so this is what lets a renter extend a lease without
losing its running jobs. The validator itself stops the lease (``lease_stop``) at the renter's
end. Once the miner accepts, the lease is ``active`` and the start receipt (``seq`` 0, zero
length) is signed and sent for countersigning.

**Receipts.** Every ``leases.receipt_interval_s`` an ``hourly`` receipt bills the time since the
previous one (at most 24 hours; a longer silence leaves an unbilled gap). Only receipts the miner
countersigned are stored (in ``lease_receipts``, next to the receipts collected from miners). A
receipt the miner refuses outright (403 or a malformed answer) is dropped and its period stays
unbilled; one that fails on the link is retried unchanged at the next tick.

**Ends.**

- *expiry*: at ``ends_at``: ``lease_stop``, then an ``end`` receipt up to ``ends_at``;
- *termination* by the renter: the same, up to now;
- *worker loss*: the worker is missing from its miner's polls (or the miner cannot be reached)
  for ``leases.worker_lost_after_s``, or polls after the start show it is not holding the
  lease: the lease becomes ``lost`` and billing ends at the last countersigned receipt (no end
  receipt is issued for time nobody observed). The availability loss is already recorded by the
  polls, which saw the worker offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import structlog

from byteleap.config.validator import LeasesSection
from byteleap.errors import (
    ByteLeapError,
    Forbidden,
    LinkError,
    MalformedMessage,
    VerificationFailed,
)
from byteleap.leases.receipts import MAX_PERIOD_S, MICROS, Receipt, ReceiptKind
from byteleap.protocol.validator_api import LeaseStartRequest, LeaseStopRequest
from neurons.common.miner_client import MinerClient
from neurons.validator.leasing.errors import (
    DurationTooLong,
    LeaseNotActive,
    LeaseStartFailed,
    NoCapacity,
    NotFound,
    SpendLimitExceeded,
)
from neurons.validator.leasing.matching import (
    CapacityLine,
    LeaseRequest,
    NoMatch,
    Offer,
    capacity,
    choose,
    offers,
)
from neurons.validator.store.leases import LeaseRow, LeaseStore, RenterRow
from neurons.validator.store.records import ValidatorStore, WorkerRow

log = structlog.get_logger("byteleap.validator.leases")

#: longest pause between two looks at the running leases (expiry precision)
MAX_TICK_S = 10.0
#: money compares with this tolerance (float sums of prices)
MONEY_EPSILON = 1e-9

Connect = Callable[[str, str, float], MinerClient]


def new_lease_id() -> str:
    """A lease id no one can guess: 128 random bits, hex."""
    return "lease-" + secrets.token_hex(16)


def _ts(at: datetime) -> int:
    return int(at.timestamp())


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass
class _Tip:
    """The next receipt of a lease: its ``seq`` and where its period starts."""

    next_seq: int
    billed_until: int


class LeaseManager:
    """Starts, extends and ends leases and issues their receipts (see the module docstring)."""

    def __init__(
        self,
        *,
        leases: LeaseStore,
        store: ValidatorStore,
        section: LeasesSection,
        netuid: int,
        validator_hotkey: str,
        connect: Connect,
        request_timeout_s: float,
        wall_clock: Callable[[], datetime],
        new_id: Callable[[], str] = new_lease_id,
        cpu_workers: bool = False,
    ) -> None:
        self.leases = leases
        #: CPU devices may be leased (``challenge.cpu_workers``: devnet and tests only)
        self.cpu_workers = cpu_workers
        self.store = store
        self.section = section
        self.netuid = netuid
        self.validator_hotkey = validator_hotkey
        self.connect = connect
        self.request_timeout_s = request_timeout_s
        self.wall_clock = wall_clock
        self.new_id = new_id
        self._create_lock = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._tips: dict[str, _Tip] = {}
        self._pending: dict[str, Receipt] = {}
        self._starting: set[str] = set()

    @property
    def tick_interval_s(self) -> float:
        return min(MAX_TICK_S, self.section.receipt_interval_s)

    def _lock(self, lease_id: str) -> asyncio.Lock:
        return self._locks.setdefault(lease_id, asyncio.Lock())

    # ------------------------------------------------------------------ capacity

    async def offers(self, now: datetime) -> list[Offer]:
        workers = await self.store.workers(now)
        window = timedelta(hours=self.section.verified_within_hours)
        verification = await self.leases.verification(now - window)
        held = await self.leases.held_workers()
        return offers(
            workers,
            verification,
            held,
            now=now,
            verified_within=window,
            cpu_workers=self.cpu_workers,
        )

    async def capacity(self) -> list[CapacityLine]:
        return capacity(await self.offers(self.wall_clock()), self.section.price_for)

    # ------------------------------------------------------------------ renter actions

    async def lease_of(self, renter: RenterRow, lease_id: str) -> LeaseRow:
        """The renter's lease; ``NotFound`` for a missing lease and for another renter's."""
        lease = await self.leases.lease(lease_id)
        if lease is None or lease.renter_id != renter.id:
            raise NotFound(f"no lease {lease_id}")
        return lease

    def _check_duration(self, hours: float) -> None:
        limit = self.section.max_duration_hours
        if hours > limit:
            raise DurationTooLong(f"a lease lasts at most {limit} hours; {hours:g} asked for")

    async def _check_spend(self, renter: RenterRow, amount: float) -> None:
        if renter.spend_limit is None:
            return
        spent = await self.leases.spent(renter.id)
        if spent + amount > renter.spend_limit + MONEY_EPSILON:
            raise SpendLimitExceeded(
                f"booking {amount:.6g} more would exceed the spending limit of "
                f"{renter.spend_limit:g} ({spent:.6g} booked so far)"
            )

    async def create(self, renter: RenterRow, request: LeaseRequest) -> LeaseRow:
        """Match, book, start through the miner and issue the start receipt."""
        self._check_duration(request.duration_hours)
        async with self._create_lock:
            now = self.wall_clock()
            choice = choose(await self.offers(now), request, self.section.price_for)
            if isinstance(choice, NoMatch):
                raise NoCapacity(choice.reason)
            amount = choice.price_per_gpu_hour * request.count * request.duration_hours
            await self._check_spend(renter, amount)
            lease = LeaseRow(
                id=self.new_id(),
                renter_id=renter.id,
                miner_hotkey=choice.offer.miner_hotkey,
                worker_pubkey=choice.offer.worker_pubkey,
                gpu_uuids=choice.gpu_uuids,
                price_per_gpu_hour=choice.price_per_gpu_hour,
                created_at=now,
                ends_at=_at(_ts(now) + round(request.duration_hours * 3600)),
                status="pending",
            )
            await self.leases.insert_lease(lease)
            self._starting.add(lease.id)
        try:
            return await self._start(lease, choice.offer.endpoint)
        finally:
            self._starting.discard(lease.id)

    async def _start(self, lease: LeaseRow, endpoint: str) -> LeaseRow:
        hold_until = _ts(lease.created_at) + self.section.max_duration_hours * 3600
        request = LeaseStartRequest(
            lease_id=lease.id,
            worker_pubkey=lease.worker_pubkey,
            gpu_uuids=list(lease.gpu_uuids),
            ends_at=hold_until,
        )
        try:
            async with self._client_at(lease.miner_hotkey, endpoint) as client:
                answer = await client.lease_start(request)
        except ByteLeapError as exc:
            await self._fail(lease, f"{exc.code}: {exc.message}", stop=True)
            raise
        if not answer.accepted:
            await self._fail(lease, f"refused: {answer.reason}", stop=False)
            raise LeaseStartFailed(f"the miner refused the lease: {answer.reason or 'no reason'}")
        started = self.wall_clock()
        await self.leases.set_status(lease.id, "active", expect=("pending",), started_at=started)
        lease = replace(lease, status="active", started_at=started)
        log.info(
            "lease_started",
            lease=lease.id,
            miner=lease.miner_hotkey,
            worker=lease.worker_pubkey[:16],
            gpus=lease.gpus,
            price=lease.price_per_gpu_hour,
            ends_at=lease.ends_at.isoformat(),
        )
        async with self._lock(lease.id):
            self._tips[lease.id] = _Tip(1, _ts(started))
            await self._issue(lease, "start", _ts(started), _ts(started))
        return lease

    async def _fail(self, lease: LeaseRow, reason: str, *, stop: bool) -> None:
        await self.leases.set_status(
            lease.id, "failed", expect=("pending",), ended_at=self.wall_clock(), end_reason=reason
        )
        log.warning("lease_start_failed", lease=lease.id, reason=reason)
        if stop:  # the miner may have started it before the answer was lost
            await self._stop_at_miner(lease, "lease start failed")

    async def extend(self, renter: RenterRow, lease_id: str, hours: float) -> LeaseRow:
        """Move an active lease's end by ``hours`` (within the duration cap and the limit)."""
        async with self._create_lock:
            lease = await self.lease_of(renter, lease_id)
            now = self.wall_clock()
            if lease.status != "active" or lease.ends_at <= now:
                raise LeaseNotActive(f"lease {lease_id} is {lease.status}: it cannot be extended")
            start = lease.started_at or lease.created_at
            ends_at = lease.ends_at + timedelta(seconds=round(hours * 3600))
            self._check_duration((ends_at - start).total_seconds() / 3600)
            await self._check_spend(renter, lease.price_per_gpu_hour * lease.gpus * hours)
            if not await self.leases.extend(lease_id, ends_at):
                raise LeaseNotActive(f"lease {lease_id} ended meanwhile")
        log.info("lease_extended", lease=lease_id, ends_at=ends_at.isoformat())
        return replace(lease, ends_at=ends_at)

    async def terminate(self, renter: RenterRow, lease_id: str) -> LeaseRow:
        """End the renter's lease now (an ended lease is returned as it is)."""
        lease = await self.lease_of(renter, lease_id)
        if lease.status == "pending":
            raise LeaseNotActive(f"lease {lease_id} is still starting; try again in a moment")
        if lease.status == "active":
            await self._end(lease, "terminated by the renter", self.wall_clock())
        ended = await self.leases.lease(lease_id)
        assert ended is not None
        return ended

    # ------------------------------------------------------------------ miner access

    @contextlib.asynccontextmanager
    async def _client_at(self, miner_hotkey: str, endpoint: str) -> AsyncIterator[MinerClient]:
        client = self.connect(miner_hotkey, endpoint, self.request_timeout_s)
        try:
            yield client
        finally:
            await client.aclose()

    @contextlib.asynccontextmanager
    async def client(self, lease: LeaseRow) -> AsyncIterator[MinerClient]:
        """A signed client of the miner that routes ``lease``."""
        endpoint = await self.leases.miner_endpoint(lease.miner_hotkey)
        if not endpoint:
            raise LinkError(f"the miner of lease {lease.id} serves no endpoint now")
        async with self._client_at(lease.miner_hotkey, endpoint) as client:
            yield client

    async def _stop_at_miner(self, lease: LeaseRow, reason: str) -> bool:
        try:
            async with self.client(lease) as client:
                answer = await client.lease_stop(LeaseStopRequest(lease_id=lease.id, reason=reason))
        except ByteLeapError as exc:
            log.warning("lease_stop_failed", lease=lease.id, code=exc.code, error=exc.message)
            return False
        return answer.stopped

    # ------------------------------------------------------------------ receipts

    async def _tip(self, lease: LeaseRow) -> _Tip:
        tip = self._tips.get(lease.id)
        if tip is None:
            stored = await self.leases.receipt_tip(self.validator_hotkey, lease.id)
            start = _ts(lease.started_at or lease.created_at)
            tip = _Tip(
                next_seq=1 if stored.seq is None else stored.seq + 1,
                billed_until=start if stored.period_end is None else stored.period_end,
            )
            self._tips[lease.id] = tip
        return tip

    async def _issue(self, lease: LeaseRow, kind: ReceiptKind, start: int, end: int) -> bool:
        """Sign a receipt for ``[start, end]`` and have the miner countersign it (the caller
        holds the lease's lock and has flushed any pending receipt)."""
        tip = await self._tip(lease)
        now = _ts(self.wall_clock())
        receipt = Receipt(
            netuid=self.netuid,
            lease_id=lease.id,
            seq=0 if kind == "start" else tip.next_seq,
            kind=kind,
            validator_hotkey=self.validator_hotkey,
            miner_hotkey=lease.miner_hotkey,
            worker_pubkey=lease.worker_pubkey,
            gpu_uuids=sorted(lease.gpu_uuids),
            gpus=lease.gpus,
            price_per_gpu_hour_micros=round(lease.price_per_gpu_hour * MICROS),
            period_start=start,
            period_end=end,
            issued_at=max(now, end),
        )
        self._pending[lease.id] = receipt
        return await self._send_pending(lease)

    async def _send_pending(self, lease: LeaseRow) -> bool:
        """Send the lease's pending receipt; True once it is countersigned and stored."""
        receipt = self._pending.get(lease.id)
        if receipt is None:
            return True
        tip = await self._tip(lease)
        try:
            async with self.client(lease) as client:
                answer = await client.submit_receipt(receipt)
        except (Forbidden, MalformedMessage, VerificationFailed) as exc:
            # the miner will not countersign these bytes: the period stays unbilled
            self._pending.pop(lease.id, None)
            self._advance(tip, receipt)
            log.warning(
                "receipt_refused", lease=lease.id, seq=receipt.seq, code=exc.code, error=exc.message
            )
            return False
        except ByteLeapError as exc:
            log.warning(
                "receipt_deferred",
                lease=lease.id,
                seq=receipt.seq,
                code=exc.code,
                error=exc.message,
            )
            return False
        await self.leases.insert_receipt(answer.signed, self.wall_clock())
        self._pending.pop(lease.id, None)
        self._advance(tip, receipt)
        log.info(
            "receipt_issued",
            lease=lease.id,
            seq=receipt.seq,
            kind=receipt.kind,
            seconds=receipt.seconds,
            amount_micros=receipt.amount_micros,
        )
        return True

    @staticmethod
    def _advance(tip: _Tip, receipt: Receipt) -> None:
        tip.next_seq = max(tip.next_seq, receipt.seq + 1)
        tip.billed_until = max(tip.billed_until, receipt.period_end)

    # ------------------------------------------------------------------ ends

    async def _end(self, lease: LeaseRow, reason: str, at: datetime) -> None:
        """Expiry or termination: stop at the miner, then the end receipt up to ``at``."""
        async with self._lock(lease.id):
            moved = await self.leases.set_status(
                lease.id, "ended", expect=("active",), ended_at=at, end_reason=reason
            )
            if not moved:
                return
            await self._stop_at_miner(lease, reason)
            if not await self._send_pending(lease):
                # still not countersigned: give it up so the end receipt can follow it
                dropped = self._pending.pop(lease.id, None)
                if dropped is not None:
                    self._advance(await self._tip(lease), dropped)
            tip = await self._tip(lease)
            end = max(tip.billed_until, _ts(at))
            start = max(tip.billed_until, end - MAX_PERIOD_S)
            await self._issue(lease, "end", start, end)
        log.info("lease_ended", lease=lease.id, reason=reason, at=at.isoformat())

    async def _lose(self, lease: LeaseRow, reason: str) -> None:
        """Worker loss: billing ends at the last countersigned receipt; no end receipt."""
        async with self._lock(lease.id):
            self._pending.pop(lease.id, None)
            stored = await self.leases.receipt_tip(self.validator_hotkey, lease.id)
            start = lease.started_at or lease.created_at
            ended_at = start if stored.period_end is None else _at(stored.period_end)
            moved = await self.leases.set_status(
                lease.id, "lost", expect=("active",), ended_at=ended_at, end_reason=reason
            )
            if not moved:
                return
        log.warning("lease_lost", lease=lease.id, reason=reason, billed_until=ended_at.isoformat())
        await self._stop_at_miner(lease, reason)

    def lost_reason(self, lease: LeaseRow, worker: WorkerRow | None, now: datetime) -> str | None:
        """Why ``lease``'s worker counts as lost at ``now`` (None while it is there)."""
        grace = timedelta(seconds=self.section.worker_lost_after_s)
        started = lease.started_at or lease.created_at
        if worker is None:
            return "the worker is no longer known" if now - started > grace else None
        if not worker.online:
            if now - max(worker.last_seen, started) > grace:
                return "the worker has been missing from its miner's polls"
            return None
        if worker.state != "leased" and worker.last_seen - started > grace:
            return f"the worker reports {worker.state!r}: it no longer holds the lease"
        return None

    # ------------------------------------------------------------------ the loop

    async def tick(self) -> None:
        """One pass of the lease loop: losses, expiries, due receipts, leftovers."""
        now = self.wall_clock()
        active = await self.leases.leases_with_status("active")
        workers = {(w.miner_hotkey, w.worker_pubkey): w for w in await self.store.workers(now)}
        for lease in active:
            try:
                await self._step(lease, workers.get((lease.miner_hotkey, lease.worker_pubkey)))
            except ByteLeapError as exc:
                log.warning("lease_step_failed", lease=lease.id, code=exc.code, error=exc.message)
        active_ids = {lease.id for lease in active}
        for lease_id in [i for i in self._pending if i not in active_ids]:
            row = await self.leases.lease(lease_id)
            if row is None:
                self._pending.pop(lease_id, None)
                continue
            async with self._lock(lease_id):
                await self._send_pending(row)
        for lease in await self.leases.leases_with_status("pending"):
            if lease.id not in self._starting:  # a start this process no longer runs
                await self._fail(lease, "the validator restarted while starting it", stop=True)
        for lease_id in [i for i in self._tips if i not in active_ids and i not in self._pending]:
            self._tips.pop(lease_id, None)
            self._locks.pop(lease_id, None)

    async def _step(self, lease: LeaseRow, worker: WorkerRow | None) -> None:
        fresh = await self.leases.lease(lease.id)  # an extension may have moved its end
        if fresh is None or fresh.status != "active":
            return
        lease = fresh
        now = self.wall_clock()
        if now >= lease.ends_at:
            await self._end(lease, "expired", lease.ends_at)
            return
        reason = self.lost_reason(lease, worker, now)
        if reason is not None:
            await self._lose(lease, reason)
            return
        async with self._lock(lease.id):
            if not await self._send_pending(lease):
                return
            tip = await self._tip(lease)
            now_ts = _ts(now)
            if now_ts - tip.billed_until >= self.section.receipt_interval_s:
                start = max(tip.billed_until, now_ts - MAX_PERIOD_S)
                await self._issue(lease, "hourly", start, now_ts)

    async def close(self) -> None:
        """Nothing to release; pending receipts are re-derived from the database at start."""
        self._pending.clear()


__all__ = ["LeaseManager", "LeaseRequest", "new_lease_id"]
