"""Collect every validator's usage receipts from every miner (SPEC 5.2).

Each round, every registered miner that serves an endpoint (never this validator itself) is
asked for ``GET /receipts?after=<cursor>`` with at most ``miners.max_concurrency`` miners at once
and ``miners.request_timeout_s`` per page, page after page while the miner says there are more
(at most :data:`MAX_PAGES_PER_ROUND` pages a round, the rest waits for the next round).
The cursor of each miner is stored with the receipts of the page that moved it, so a restart
reads on where the last stored page ended; a new miner is read from the beginning.

Every receipt of a page goes through ``checks.check_fetched`` (the signature checks run in a
thread so that a long page does not hold up the event loop), then ``ReceiptStore.store_page``
decides ``duplicate`` / ``conflict`` / ``broken_chain``. Every receipt that is not stored is
counted by reason in ``byteleap_validator_receipts_dropped``; nothing a miner sends can make the
collector store an unchecked receipt or stop the round for the other miners.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from byteleap.errors import ByteLeapError, PeerTimeout, StorageError
from byteleap.leases.receipts import DEFAULT_SKEW_S, Verifier
from byteleap.protocol.miner_api.receipts import MAX_RECEIPTS_PAGE, ReceiptPage, SignedReceipt
from neurons.common.miner_client import verify_hotkey_signature
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.poller import pollable
from neurons.validator.receipts.checks import (
    Dropped,
    DropReason,
    check_fetched,
    permitted_validators,
)
from neurons.validator.store.receipts import ReceiptStore, StoreOutcome
from neurons.validator.store.records import MinerRow

log = structlog.get_logger("byteleap.validator.receipts")

#: pages read from one miner in one round; a miner with more waits for the next round
MAX_PAGES_PER_ROUND = 50

_DROPPED_BY_STORE = {
    StoreOutcome.DUPLICATE: DropReason.DUPLICATE,
    StoreOutcome.CONFLICT: DropReason.CONFLICT,
    StoreOutcome.BROKEN_CHAIN: DropReason.BROKEN_CHAIN,
}


class ReceiptsApi(Protocol):
    async def receipts(self, *, after: int = 0, limit: int = 100) -> ReceiptPage: ...

    async def aclose(self) -> None: ...


#: ``connect(miner_hotkey, base_url, timeout)`` -> a client of that miner
ReceiptClientFactory = Callable[[str, str, float], ReceiptsApi]


class MinerSource(Protocol):
    async def miners(self, *, registered_only: bool = True) -> list[MinerRow]: ...


@dataclass
class MinerCollection:
    """What one miner's round brought."""

    miner_hotkey: str
    pages: int = 0
    accepted: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    cursor: int = 0
    #: why the round stopped early (the cursor stays after the last stored page)
    error: str | None = None


@dataclass
class CollectionSummary:
    miners: dict[str, MinerCollection] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return sum(m.accepted for m in self.miners.values())

    @property
    def dropped(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for m in self.miners.values():
            total.update(m.dropped)
        return total

    @property
    def failed(self) -> dict[str, str]:
        return {h: m.error for h, m in self.miners.items() if m.error is not None}


class ReceiptCollector:
    def __init__(
        self,
        *,
        miners: MinerSource,
        receipts: ReceiptStore,
        connect: ReceiptClientFactory,
        own_hotkey: str,
        netuid: int,
        max_concurrency: int,
        request_timeout_s: float,
        wall_clock: Callable[[], datetime],
        min_validator_stake: float = 0.0,
        page_size: int = MAX_RECEIPTS_PAGE,
        max_pages: int = MAX_PAGES_PER_ROUND,
        verify: Verifier = verify_hotkey_signature,
        skew_s: int = DEFAULT_SKEW_S,
        metrics: ValidatorMetrics | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_RECEIPTS_PAGE:
            raise ValueError(f"page_size must be in 1..{MAX_RECEIPTS_PAGE}")
        self.miners = miners
        self.store = receipts
        self.connect = connect
        self.own_hotkey = own_hotkey
        self.netuid = netuid
        self.max_concurrency = max_concurrency
        self.request_timeout_s = request_timeout_s
        self.wall_clock = wall_clock
        self.min_validator_stake = min_validator_stake
        self.page_size = page_size
        self.max_pages = max_pages
        self.verify = verify
        self.skew_s = skew_s
        self.metrics = metrics or ValidatorMetrics()

    async def collect_all(self) -> CollectionSummary:
        """One round over every pollable miner."""
        everyone = await self.miners.miners()
        validators = permitted_validators(everyone, self.min_validator_stake)
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(miner: MinerRow) -> MinerCollection:
            async with gate:
                return await self.collect(miner, validators)

        results = await asyncio.gather(*(one(m) for m in pollable(everyone, self.own_hotkey)))
        summary = CollectionSummary({r.miner_hotkey: r for r in results})
        log.debug(
            "receipts_collected",
            miners=len(results),
            accepted=summary.accepted,
            dropped=dict(summary.dropped),
            failed=len(summary.failed),
        )
        return summary

    async def collect(self, miner: MinerRow, validators: Set[str]) -> MinerCollection:
        """Read one miner's new receipts, page by page, storing each page as it comes."""
        assert miner.endpoint is not None
        result = MinerCollection(miner.hotkey)
        try:
            result.cursor = await self.store.cursor(miner.hotkey)
            client = self.connect(miner.hotkey, miner.endpoint, self.request_timeout_s)
            try:
                while result.pages < self.max_pages:
                    after = result.cursor
                    page = await asyncio.wait_for(
                        client.receipts(after=after, limit=self.page_size),
                        self.request_timeout_s + 1.0,
                    )
                    result.pages += 1
                    self.metrics.receipt_pages.labels(result="ok").inc()
                    await self._take(page, miner.hotkey, after, validators, result)
                    if not (page.more and page.receipts):
                        break
            finally:
                await client.aclose()
        except TimeoutError:
            self._failed(result, miner, PeerTimeout("no receipt page within the request timeout"))
        except ByteLeapError as exc:
            self._failed(result, miner, exc)
        except Exception as exc:  # our bug: one miner must not stop the others' collection
            log.exception("receipt_collection_crashed", miner=miner.hotkey)
            result.error = f"internal: {exc!r}"
            self.metrics.receipt_pages.labels(result="failed").inc()
        return result

    def _failed(self, result: MinerCollection, miner: MinerRow, exc: ByteLeapError) -> None:
        result.error = f"{exc.code}: {exc.message}"[:500]
        if not isinstance(exc, StorageError):
            self.metrics.receipt_pages.labels(result="failed").inc()
        log.info("receipts_not_collected", miner=miner.hotkey, uid=miner.uid, error=result.error)

    async def _take(
        self,
        page: ReceiptPage,
        miner_hotkey: str,
        after: int,
        validators: Set[str],
        result: MinerCollection,
    ) -> None:
        now = self.wall_clock()
        verdicts = await asyncio.to_thread(
            self._check_page, page.receipts, miner_hotkey, validators, int(now.timestamp())
        )
        keep = [signed for signed, dropped in verdicts if dropped is None]
        cursor = max([after, *page.cursors])
        outcomes = await self.store.store_page(now, keep, miner_hotkey=miner_hotkey, cursor=cursor)
        result.cursor = cursor
        reasons = [d.reason for _, d in verdicts if d is not None]
        reasons += [_DROPPED_BY_STORE[o] for o in outcomes if o is not StoreOutcome.STORED]
        accepted = sum(1 for o in outcomes if o is StoreOutcome.STORED)
        result.accepted += accepted
        self.metrics.receipts_accepted.inc(accepted)
        for reason in reasons:
            result.dropped[reason.value] += 1
            self.metrics.receipts_dropped.labels(reason=reason.value).inc()
        for signed, dropped in verdicts:
            if dropped is not None and dropped.reason is not DropReason.NOT_VALIDATOR:
                log.info(
                    "receipt_dropped",
                    miner=miner_hotkey,
                    reason=dropped.reason.value,
                    detail=dropped.detail,
                    validator=signed.receipt.validator_hotkey,
                    lease=signed.receipt.lease_id,
                    seq=signed.receipt.seq,
                )

    def _check_page(
        self,
        receipts: Sequence[SignedReceipt],
        miner_hotkey: str,
        validators: Set[str],
        now: int,
    ) -> list[tuple[SignedReceipt, Dropped | None]]:
        return [
            (
                signed,
                check_fetched(
                    signed,
                    source_miner=miner_hotkey,
                    netuid=self.netuid,
                    validators=validators,
                    now=now,
                    verify=self.verify,
                    skew_s=self.skew_s,
                ),
            )
            for signed in receipts
        ]


__all__ = [
    "MAX_PAGES_PER_ROUND",
    "CollectionSummary",
    "MinerCollection",
    "ReceiptClientFactory",
    "ReceiptCollector",
    "ReceiptsApi",
]
