"""The lease driver: it feeds the validator's :class:`~byteleap.sessions.lease_book.LeaseBook`
and carries out what the book says.

:class:`LeaseManager` is what the renter API calls, and :meth:`LeaseManager.tick` is the body of
the daemon's lease loop. Every decision about a lease (matching aside: :mod:`.matching` picks
the worker) is the book's; this module only reads what the book needs (offers, spending, the
workers the polls saw, rows the book does not hold), turns each instruction into a store write
or a miner call (:class:`~.gateway.MinerGateway`), and feeds the result back as the next event.
The semantics are in docs/leases-and-receipts.md ("The validator's side") and in the book's
docstring.

Locking: matching, the spending check and the ``pending`` row happen under one lock
(``_booking``), so two requests never get the same worker and a renter's bookings never race
past its limit; extensions take it too. The start itself runs outside it. A termination waits
until the book has nothing in flight for that lease (a receipt being countersigned, say).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import fields
from datetime import datetime, timedelta

import structlog

from byteleap.config.leasing import LeasesSection
from byteleap.errors import ByteLeapError
from byteleap.protocol.worker_link.leases import LeaseStart
from byteleap.sessions.lease_book import LeaseBook, LeaseRules
from byteleap.sessions.lease_events import (
    AttemptAbandoned,
    Booking,
    BookTick,
    ExtendRequested,
    ExtensionPersisted,
    InsertLease,
    LeaseEvent,
    LeaseInserted,
    LeaseInstruction,
    LeaseLoaded,
    LeaseRequested,
    LeaseStopped,
    MinerAccepted,
    Notice,
    PersistExtension,
    PersistStatus,
    ReceiptCountersigned,
    ReceiptLinkFailed,
    ReceiptRefused,
    ReceiptStored,
    Refusal,
    RefuseRenter,
    SendReceipt,
    Spending,
    StartAtMiner,
    StartLinkFailed,
    StartPeerWrong,
    StartRefused,
    StatusPersisted,
    StopAtMiner,
    StopFailed,
    StoredLease,
    StoreReceipt,
    TerminateRequested,
    WorkerSighting,
)
from neurons.validator.leasing.errors import (
    DurationTooLong,
    LeaseNotActive,
    LeaseRefused,
    LeaseStartFailed,
    NoCapacity,
    NotFound,
    SpendLimitExceeded,
)
from neurons.validator.leasing.gateway import ConnectMiner, MinerGateway, peer_wrong
from neurons.validator.leasing.matching import (
    CapacityGroup,
    LeaseRequest,
    NoMatch,
    Offer,
    capacity,
    choose,
    offers,
)
from neurons.validator.store.lease_rows import LeaseRow, RenterRow
from neurons.validator.store.leases import LeaseStore
from neurons.validator.store.records import ValidatorStore

log = structlog.get_logger("byteleap.validator.leases")

#: longest pause between two looks at the running leases (expiry precision)
MAX_TICK_S = 10.0

_REFUSALS: dict[Refusal, type[LeaseRefused]] = {
    Refusal.NO_CAPACITY: NoCapacity,
    Refusal.SPEND_LIMIT: SpendLimitExceeded,
    Refusal.TOO_LONG: DurationTooLong,
    Refusal.NOT_ACTIVE: LeaseNotActive,
    Refusal.START_FAILED: LeaseStartFailed,
}
#: notices logged as warnings; the others are info
_WARNINGS = frozenset({"lease_start_failed", "lease_lost", "receipt_refused", "receipt_deferred"})


def new_lease_id() -> str:
    """A lease id no one can guess: 128 random bits, hex."""
    return "lease-" + secrets.token_hex(16)


def to_row(lease: StoredLease) -> LeaseRow:
    return LeaseRow(**{f.name: getattr(lease, f.name) for f in fields(StoredLease)})


def to_lease(row: LeaseRow) -> StoredLease:
    return StoredLease(**{f.name: getattr(row, f.name) for f in fields(StoredLease)})


def _by_lease(instructions: Iterable[LeaseInstruction]) -> list[list[LeaseInstruction]]:
    chains: dict[str, list[LeaseInstruction]] = {}
    for instruction in instructions:
        key = instruction.lease.id if isinstance(instruction, InsertLease) else instruction.lease_id
        chains.setdefault(key, []).append(instruction)
    return list(chains.values())


class LeaseManager:
    """Feeds the lease book and carries out its instructions (see the module docstring)."""

    def __init__(
        self,
        *,
        leases: LeaseStore,
        store: ValidatorStore,
        section: LeasesSection,
        netuid: int,
        validator_hotkey: str,
        connect: ConnectMiner,
        request_timeout_s: float,
        wall_clock: Callable[[], datetime],
        new_id: Callable[[], str] = new_lease_id,
        cpu_workers: bool = False,
    ) -> None:
        self.leases = leases
        self.store = store
        self.section = section
        self.validator_hotkey = validator_hotkey
        self.wall_clock = wall_clock
        self.new_id = new_id
        #: CPU devices may be leased (``challenge.cpu_workers``: devnet and tests only)
        self.cpu_workers = cpu_workers
        self.gateway = MinerGateway(
            connect=connect, endpoints=leases, request_timeout_s=request_timeout_s
        )
        self.book = LeaseBook(
            LeaseRules(
                netuid=netuid,
                validator_hotkey=validator_hotkey,
                receipt_interval_s=section.receipt_interval_s,
                max_duration_hours=section.max_duration_hours,
                worker_lost_after_s=section.worker_lost_after_s,
            )
        )
        self._booking = asyncio.Lock()
        self._settled = asyncio.Condition()

    @property
    def tick_interval_s(self) -> float:
        return min(MAX_TICK_S, self.section.receipt_interval_s)

    # ------------------------------------------------------------------ capacity

    async def offers(self, now: datetime) -> list[Offer]:
        workers = await self.store.workers(now)
        window = timedelta(hours=self.section.verified_within_hours)
        verification = await self.leases.verification(now - window)
        held = await self.leases.held_workers() | self.book.held_workers()
        return offers(
            workers,
            verification,
            held,
            now=now,
            verified_within=window,
            cpu_workers=self.cpu_workers,
        )

    async def capacity(self) -> list[CapacityGroup]:
        return capacity(await self.offers(self.wall_clock()), self.section.price_for)

    # ------------------------------------------------------------------ renter actions

    async def lease_of(self, renter: RenterRow, lease_id: str) -> LeaseRow:
        """The renter's lease; ``NotFound`` for a missing lease and for another renter's."""
        lease = await self.leases.lease(lease_id)
        if lease is None or lease.renter_id != renter.id:
            raise NotFound(f"no lease {lease_id}")
        return lease

    async def create(self, renter: RenterRow, request: LeaseRequest) -> LeaseRow:
        """Match, book, start through the miner and issue the start receipt."""
        lease_id = self.new_id()
        async with self._booking:
            now = self.wall_clock()
            choice = choose(await self.offers(now), request, self.section.price_for)
            booking = None
            if not isinstance(choice, NoMatch):
                offer = choice.offer
                booking = Booking(
                    offer.miner_hotkey,
                    offer.worker_pubkey,
                    offer.endpoint,
                    choice.gpu_uuids,
                    choice.price_per_gpu_hour,
                )
            event = LeaseRequested(
                lease_id=lease_id,
                renter_id=renter.id,
                duration_hours=request.duration_hours,
                count=request.count,
                booking=booking,
                no_match=choice.reason if isinstance(choice, NoMatch) else "",
                spending=await self._spending(renter),
                at=now,
            )
            # the pending row is written under the lock; the start runs outside it
            start = await self._run(self.book.handle(event), pause_at=StartAtMiner)
        await self._run(start)
        lease = self.book.lease(lease_id)
        if lease is None or lease.status != "active":
            raise LeaseStartFailed(f"lease {lease_id} was ended while it started")
        return to_row(lease)

    async def extend(self, renter: RenterRow, lease_id: str, hours: float) -> LeaseRow:
        """Move an active lease's end by ``hours`` (within the duration cap and the limit)."""
        async with self._booking:
            await self._adopt(await self.lease_of(renter, lease_id))
            event = ExtendRequested(
                lease_id, hours, await self._spending(renter), self.wall_clock()
            )
            await self._run(self.book.handle(event))
        lease = self.book.lease(lease_id)
        assert lease is not None
        return to_row(lease)

    async def terminate(self, renter: RenterRow, lease_id: str) -> LeaseRow:
        """End the renter's lease now (an ended lease is returned as it is)."""
        await self._adopt(await self.lease_of(renter, lease_id))
        async with self._settled:
            await self._settled.wait_for(lambda: not self.book.busy(lease_id))
        await self._run(self.book.handle(TerminateRequested(lease_id, self.wall_clock())))
        ended = await self.leases.lease(lease_id)
        assert ended is not None
        return ended

    async def _spending(self, renter: RenterRow) -> Spending:
        if renter.spend_limit is None:
            return Spending(0.0, None)
        return Spending(await self.leases.spent(renter.id), renter.spend_limit)

    async def _adopt(self, row: LeaseRow) -> None:
        """Hand the book a pending or active row it does not hold (a restart, a row written
        by someone else)."""
        if not row.holding or self.book.knows(row.id):
            return
        tip = await self.leases.receipt_tip(self.validator_hotkey, row.id)
        if not self.book.knows(row.id):
            self.book.handle(LeaseLoaded(to_lease(row), tip.seq, tip.period_end))

    # ------------------------------------------------------------------ the loop

    async def tick(self) -> None:
        """One pass of the lease loop: losses, expiries, due receipts, leftovers."""
        now = self.wall_clock()
        for row in await self.leases.leases_with_status("active", "pending"):
            await self._adopt(row)
        sightings = {
            (w.miner_hotkey, w.worker_pubkey): WorkerSighting(w.online, w.last_seen, w.state)
            for w in await self.store.workers(now)
        }
        for chain in _by_lease(self.book.handle(BookTick(now, sightings))):
            try:
                await self._run(chain)
            except ByteLeapError as exc:
                lease_id = (
                    chain[0].lease.id if isinstance(chain[0], InsertLease) else chain[0].lease_id
                )
                log.warning("lease_step_failed", lease=lease_id, code=exc.code, error=exc.message)

    # ------------------------------------------------------------------ carrying out

    async def _run(
        self,
        instructions: list[LeaseInstruction],
        *,
        pause_at: type[LeaseInstruction] | None = None,
    ) -> list[LeaseInstruction]:
        """Carry out ``instructions`` and everything the book answers to their results, until
        it has nothing left (or the next one is a ``pause_at``: those are returned). A refusal
        raises its error, a failed start raises the miner's error, both after the book has
        settled; a failure to carry one out is fed back as :class:`AttemptAbandoned`, then
        raised."""
        queue = deque(instructions)
        refused: RefuseRenter | None = None
        failure: ByteLeapError | None = None
        try:
            while queue:
                if pause_at is not None and isinstance(queue[0], pause_at):
                    return list(queue)
                instruction = queue.popleft()
                try:
                    events, error = await self._carry_out(instruction)
                except BaseException:
                    self.book.handle(AttemptAbandoned(instruction))
                    raise
                if isinstance(instruction, RefuseRenter) and refused is None:
                    refused = instruction
                failure = failure or error
                queue.extend(self.book.handle(*events))
        finally:
            async with self._settled:
                self._settled.notify_all()
        if refused is not None:
            raise _REFUSALS[refused.refusal](refused.message)
        if failure is not None:
            raise failure
        return []

    async def _carry_out(
        self, instruction: LeaseInstruction
    ) -> tuple[list[LeaseEvent], ByteLeapError | None]:
        """One instruction; its result as events, and a miner error the caller must see."""
        leases = self.leases
        match instruction:
            case InsertLease(lease=lease):
                await leases.insert_lease(to_row(lease))
                return [LeaseInserted(lease.id)], None
            case PersistStatus(lease_id=lease_id):
                moved = await leases.set_status(
                    lease_id,
                    instruction.status,
                    expect=instruction.expect,
                    started_at=instruction.started_at,
                    ended_at=instruction.ended_at,
                    end_reason=instruction.end_reason,
                )
                return [StatusPersisted(lease_id, moved, self.wall_clock())], None
            case PersistExtension(lease_id=lease_id, ends_at=ends_at):
                return [ExtensionPersisted(lease_id, await leases.extend(lease_id, ends_at))], None
            case StartAtMiner():
                return await self._start(instruction)
            case StopAtMiner(lease_id=lease_id, miner_hotkey=miner, reason=reason):
                try:
                    stopped = await self.gateway.stop_lease(miner, lease_id, reason)
                except ByteLeapError as exc:
                    log.warning(
                        "lease_stop_failed", lease=lease_id, code=exc.code, error=exc.message
                    )
                    return [StopFailed(lease_id, exc.message, self.wall_clock())], None
                return [LeaseStopped(lease_id, stopped, self.wall_clock())], None
            case SendReceipt(lease_id=lease_id, miner_hotkey=miner, receipt=receipt):
                try:
                    signed = await self.gateway.countersign(miner, receipt)
                except ByteLeapError as exc:
                    failed = ReceiptRefused if peer_wrong(exc) else ReceiptLinkFailed
                    error = f"{exc.code}: {exc.message}"
                    return [failed(lease_id, receipt.seq, error, self.wall_clock())], None
                return [ReceiptCountersigned(lease_id, signed)], None
            case StoreReceipt(lease_id=lease_id, signed=signed):
                now = self.wall_clock()
                await leases.insert_receipt(signed, now)
                receipt = signed.receipt
                log.info(
                    "receipt_issued",
                    lease=lease_id,
                    seq=receipt.seq,
                    kind=receipt.kind,
                    seconds=receipt.seconds,
                    amount_micros=receipt.amount_micros,
                )
                return [ReceiptStored(lease_id, receipt.seq, now)], None
            case Notice(lease_id=lease_id, what=what, detail=detail):
                (log.warning if what in _WARNINGS else log.info)(what, lease=lease_id, **detail)
                return [], None
            case RefuseRenter():
                return [], None
        raise TypeError(f"not a lease instruction: {instruction!r}")

    async def _start(self, start: StartAtMiner) -> tuple[list[LeaseEvent], ByteLeapError | None]:
        message = LeaseStart(
            lease_id=start.lease_id, gpu_uuids=list(start.gpu_uuids), ends_at=start.hold_until
        )
        try:
            answer = await self.gateway.start_lease(
                start.miner_hotkey, start.endpoint, start.worker_pubkey, message
            )
        except ByteLeapError as exc:
            failed = StartPeerWrong if peer_wrong(exc) else StartLinkFailed
            return [failed(start.lease_id, f"{exc.code}: {exc.message}", self.wall_clock())], exc
        if not answer.accepted:
            return [StartRefused(start.lease_id, answer.reason, self.wall_clock())], None
        return [MinerAccepted(start.lease_id, self.wall_clock())], None


__all__ = ["LeaseManager", "LeaseRequest", "new_lease_id", "to_lease", "to_row"]
