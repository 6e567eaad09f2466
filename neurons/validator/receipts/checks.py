"""What a fetched receipt must pass before it may count (SPEC 5.2), with no I/O.

A miner's ``GET /receipts`` page is not trusted as it comes: the miner could serve anything. Each
:class:`~byteleap.protocol.miner_api.receipts.SignedReceipt` is checked here in order of cost, and
the first failure names the :class:`DropReason` the collector counts:

1. ``wrong_miner``: the receipt bills another miner than the one that served it (a replay of
   someone else's receipt);
2. ``wrong_netuid``: it is for another subnet;
3. ``not_validator``: its seller is not a validator of the current metagraph (a validator permit
   and at least ``leases.min_receipt_validator_stake``);
4. ``not_canonical``: the receipt does not survive the round trip through its canonical bytes;
5. ``invalid``: it breaks a rule of ``check_receipt`` (inverted or over-long period, start
   receipt with a non-zero period, issued before its period ended, dated in the future);
6. ``bad_validator_signature`` / ``bad_miner_signature``: a signature does not verify against
   the hotkey the receipt names (a forgery, or a tampered receipt).

What needs the stored receipts (``duplicate``, ``conflict``, ``broken_chain``) is decided by
:class:`neurons.validator.store.receipts.ReceiptStore` in the transaction that stores it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Set
from dataclasses import dataclass

from byteleap.errors import ByteLeapError
from byteleap.leases.receipts import (
    DEFAULT_SKEW_S,
    Verifier,
    canonical_bytes,
    check_receipt,
    parse_canonical,
    signing_payload,
)
from byteleap.protocol.miner_api.receipts import SignedReceipt
from neurons.validator.store.records import MinerRow


class DropReason(enum.StrEnum):
    """Why a fetched receipt earns nothing (the label of the ``receipts_dropped`` metric)."""

    WRONG_MINER = "wrong_miner"
    WRONG_NETUID = "wrong_netuid"
    NOT_VALIDATOR = "not_validator"
    NOT_CANONICAL = "not_canonical"
    INVALID = "invalid"
    BAD_VALIDATOR_SIGNATURE = "bad_validator_signature"
    BAD_MINER_SIGNATURE = "bad_miner_signature"
    #: already stored with the same bytes (fetched again, or issued by this validator)
    DUPLICATE = "duplicate"
    #: the same (validator, lease, seq) is stored with other bytes; the first one stays
    CONFLICT = "conflict"
    #: it cannot sit in its lease's chain next to the stored receipts (``check_successor``)
    BROKEN_CHAIN = "broken_chain"


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: DropReason
    detail: str


def permitted_validators(miners: Iterable[MinerRow], min_stake: float) -> frozenset[str]:
    """Hotkeys whose receipts may count: registered, with a validator permit and ``min_stake``."""
    return frozenset(
        m.hotkey for m in miners if m.registered and m.validator_permit and m.stake >= min_stake
    )


def check_fetched(
    signed: SignedReceipt,
    *,
    source_miner: str,
    netuid: int,
    validators: Set[str],
    now: int,
    verify: Verifier,
    skew_s: int = DEFAULT_SKEW_S,
) -> Dropped | None:
    """``None`` when ``signed`` (served by ``source_miner``) may be stored, else why not."""
    receipt = signed.receipt
    if receipt.miner_hotkey != source_miner:
        return Dropped(DropReason.WRONG_MINER, f"bills miner {receipt.miner_hotkey}")
    if receipt.netuid != netuid:
        return Dropped(DropReason.WRONG_NETUID, f"netuid {receipt.netuid}")
    if receipt.validator_hotkey not in validators:
        return Dropped(DropReason.NOT_VALIDATOR, f"sold by {receipt.validator_hotkey}")
    try:
        payload = canonical_bytes(receipt)
        if parse_canonical(payload) != receipt:
            return Dropped(DropReason.NOT_CANONICAL, "changes in the canonical round trip")
    except (ByteLeapError, ValueError, TypeError) as exc:
        return Dropped(DropReason.NOT_CANONICAL, str(exc)[:200])
    try:
        check_receipt(receipt, now=now, skew_s=skew_s)
    except ByteLeapError as exc:
        return Dropped(DropReason.INVALID, exc.message[:200])
    message = signing_payload(receipt)
    if not _verifies(verify, receipt.validator_hotkey, message, signed.validator_signature):
        return Dropped(DropReason.BAD_VALIDATOR_SIGNATURE, "validator signature")
    if not _verifies(verify, receipt.miner_hotkey, message, signed.miner_signature):
        return Dropped(DropReason.BAD_MINER_SIGNATURE, "miner signature")
    return None


def _verifies(verify: Verifier, hotkey: str, message: bytes, signature: bytes) -> bool:
    """A verifier that raises on odd input has not verified anything."""
    try:
        return bool(verify(hotkey, message, bytes(signature)))
    except Exception:
        return False


__all__ = ["DropReason", "Dropped", "check_fetched", "permitted_validators"]
