"""Receipt collection: every validator's usage receipts, fetched from every miner, checked
against the metagraph and both signatures, and stored for the lease score (SPEC 5.2).

:mod:`.checks` holds the rules a fetched receipt must pass (no I/O); :mod:`.collector` reads the
miners' ``GET /receipts`` pages and stores what passes through
:class:`neurons.validator.store.receipts.ReceiptStore`.
"""

from __future__ import annotations

from neurons.validator.receipts.checks import (
    Dropped,
    DropReason,
    check_fetched,
    permitted_validators,
)
from neurons.validator.receipts.collector import (
    MAX_PAGES_PER_ROUND,
    CollectionSummary,
    MinerCollection,
    ReceiptClientFactory,
    ReceiptCollector,
    ReceiptsApi,
)

__all__ = [
    "MAX_PAGES_PER_ROUND",
    "CollectionSummary",
    "DropReason",
    "Dropped",
    "MinerCollection",
    "ReceiptClientFactory",
    "ReceiptCollector",
    "ReceiptsApi",
    "check_fetched",
    "permitted_validators",
]
