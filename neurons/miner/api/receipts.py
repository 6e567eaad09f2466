"""Usage receipts at the miner: ``POST /lease/receipt`` countersigns, ``GET /receipts`` pages.

The receipt's own checks (caller, miner, netuid, period, the validator's signature) are made
here; whether it fits a lease this miner routed is the
:class:`~byteleap.sessions.miner_leases.LeaseTable`'s to say (docs/leases-and-receipts.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.datastructures import QueryParams

from byteleap.errors import Forbidden, MalformedMessage
from byteleap.leases.receipts import Verifier, check_receipt, signing_payload
from byteleap.protocol.miner_api.receipts import (
    MAX_RECEIPTS_PAGE,
    ReceiptPage,
    ReceiptSubmitRequest,
    ReceiptSubmitResponse,
)
from byteleap.sessions.lease_table_events import IssueReceipt, ReceiptOffered
from byteleap.sessions.miner_leases import LEASE_RETENTION_S
from neurons.miner.api.leases import LeaseService
from neurons.miner.store import MinerStore

log = logging.getLogger("neurons.miner.api")

#: receipts are kept this long by default (at least the validators' 7-day lease window)
RECEIPT_RETENTION_S = 30 * 24 * 3600.0
#: how often old leases and receipts are pruned from the store, at most
PRUNE_EVERY_S = 3600.0
#: receipts per ``GET /receipts`` page when the caller does not say
DEFAULT_RECEIPTS_PAGE = 100


class ReceiptService:
    """Countersigns receipts of this miner's leases and keeps them (in memory without a store)."""

    def __init__(
        self,
        *,
        miner_hotkey: str,
        signer: Callable[[bytes], bytes],
        leases: LeaseService,
        store: MinerStore | None,
        clock: Callable[[], float],
        netuid: int | None,
        verify_signature: Verifier,
        skew_s: int,
        retention_s: float,
    ) -> None:
        self.miner_hotkey = miner_hotkey
        self.signer = signer
        self.leases = leases
        self.clock = clock
        self.netuid = netuid
        self.verify_signature = verify_signature
        self.skew_s = skew_s
        self.retention_s = retention_s
        self._store = store
        self.last_prune = clock()

    @property
    def store(self) -> MinerStore:
        """The miner's store; an in-memory one, made on first use, when it has none."""
        if self._store is None:
            self._store = MinerStore(None)
        return self._store

    async def submit(self, caller: str, req: ReceiptSubmitRequest) -> ReceiptSubmitResponse:
        receipt = req.receipt
        if receipt.validator_hotkey != caller:
            raise Forbidden(
                f"the receipt names validator {receipt.validator_hotkey}, "
                f"but {caller} signed the request"
            )
        if receipt.miner_hotkey != self.miner_hotkey:
            raise Forbidden(f"the receipt is for miner {receipt.miner_hotkey}, not this one")
        if self.netuid is not None and receipt.netuid != self.netuid:
            raise Forbidden(f"the receipt is for netuid {receipt.netuid}, not {self.netuid}")
        now = self.clock()
        check_receipt(receipt, now=int(now), skew_s=self.skew_s)
        payload = signing_payload(receipt)
        if not self.verify_signature(caller, payload, req.validator_signature):
            raise MalformedMessage("validator_signature is not the caller's signature of it")
        (issue,) = self.leases.table.handle(ReceiptOffered(now, caller, receipt, self.skew_s))
        assert isinstance(issue, IssueReceipt)
        signature = bytes(self.signer(payload))
        signed, cursor, created = await self.store.add_receipt(
            receipt, req.validator_signature, signature, now=now
        )
        log.info(
            "receipt %s seq %d (%s) of lease %s for %s",
            "countersigned" if created else "already stored",
            receipt.seq,
            receipt.kind,
            receipt.lease_id,
            caller,
        )
        await self.prune()
        return ReceiptSubmitResponse(signed=signed, cursor=cursor)

    async def page(self, params: QueryParams) -> ReceiptPage:
        after, limit = page_query(params)
        page, more = await self.store.receipts_after(after, limit)
        return ReceiptPage(
            miner_hotkey=self.miner_hotkey,
            receipts=[signed for _, signed in page],
            cursors=[cursor for cursor, _ in page],
            next_cursor=page[-1][0] if page else after,
            more=more,
        )

    async def prune(self) -> None:
        """Forget old leases and receipts, at most once per :data:`PRUNE_EVERY_S`."""
        now = self.clock()
        if now - self.last_prune < PRUNE_EVERY_S:
            return
        self.last_prune = now
        self.leases.tick()
        await self.store.prune(
            leases_before=now - LEASE_RETENTION_S, receipts_before=now - self.retention_s
        )


def page_query(params: QueryParams) -> tuple[int, int]:
    """``after`` and ``limit`` of ``GET /receipts``; ``MalformedMessage`` for anything else."""
    unknown = sorted(set(params) - {"after", "limit"})
    if unknown:
        raise MalformedMessage(f"unknown query parameter {unknown[0][:32]!r}")
    values: dict[str, int] = {}
    for name, default, low, high in (
        ("after", 0, 0, 2**63 - 1),
        ("limit", DEFAULT_RECEIPTS_PAGE, 1, MAX_RECEIPTS_PAGE),
    ):
        given = params.getlist(name)
        if len(given) > 1:
            raise MalformedMessage(f"query parameter {name} is given twice")
        text = given[0] if given else str(default)
        if not (text.isascii() and text.isdigit() and len(text) <= 19):
            raise MalformedMessage(f"{name} must be a whole number")
        values[name] = int(text)
        if not low <= values[name] <= high:
            raise MalformedMessage(f"{name} must be between {low} and {high}")
    return values["after"], values["limit"]


__all__ = [
    "DEFAULT_RECEIPTS_PAGE",
    "PRUNE_EVERY_S",
    "RECEIPT_RETENTION_S",
    "ReceiptService",
    "page_query",
]
