"""Usage receipts of a lease, signed by the validator that sold it and by the miner (SPEC 5.2, 6).

A receipt says: "validator V and miner M agree that worker W's GPUs were leased under lease L
from ``period_start`` to ``period_end`` at this price". Receipts are the only input to the lease
score, and every validator counts every validator's receipts, so their bytes must be the same
everywhere. This module is that definition, with no I/O:

* :class:`Receipt` is the payload (a wire model, defined with the other validator-API bodies in
  ``byteleap.protocol.miner_api.receipts`` and re-exported here). :func:`canonical_bytes` is its one
  byte spelling: JSON with
  sorted keys, no whitespace, ASCII only. There are no floats: the price is an integer number of
  micro-units (``price_per_gpu_hour_micros = 2_500_000`` is 2.5 per GPU-hour) and times are whole
  unix seconds. ``gpu_uuids`` must be sorted, so one set of GPUs has one spelling.
* :func:`signing_payload` is what both parties sign: ``frame(b"byteleap/receipt/v1", canonical)``.
  The domain tag keeps a receipt signature from ever verifying as any other hotkey signature.
* :func:`check_receipt` (one receipt against the clock) and :func:`check_successor` (one receipt
  after the previous one of the same validator and lease) are the rules the miner applies
  before it countersigns, and that any validator can apply to receipts it fetched.
* Signature checks take the verifier as a callable ``verify(ss58, message, signature) -> bool``
  (sr25519 through bittensor in the daemons): the pure core does not import bittensor.

The chain of one lease (per validator)::

    seq 0  kind "start"   [t0, t0]        zero length: the lease began at t0
    seq 1  kind "hourly"  [t0, t1]
    seq 2  kind "hourly"  [t1, t2]
    ...
    seq n  kind "end"     [t_{n-1}, te]   the last one; nothing may follow it

Sequence numbers only grow and periods never overlap. A gap (a receipt the miner never saw) is
allowed: billing is what both sides signed, and a missing stretch is simply not billed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

from byteleap.crypto import frame
from byteleap.errors import Forbidden, FraudReason, MalformedMessage, VerificationFailed
from byteleap.protocol.miner_api.receipts import (
    MAX_PRICE_MICROS,
    RECEIPT_VERSION,
    Receipt,
    ReceiptKind,
    SignedReceipt,
)
from byteleap.scoring.leases import ReceiptUsage

#: domain tag of both signatures over a receipt
RECEIPT_TAG = b"byteleap/receipt/v1"
#: micro-units per unit of price
MICROS = 1_000_000
#: longest period one receipt may cover; receipts are hourly, this leaves room for a late one
MAX_PERIOD_S = 24 * 3600
#: clock difference tolerated between validator and miner, in seconds
DEFAULT_SKEW_S = 120

#: ``verify(ss58_hotkey, message, signature) -> bool``, sr25519 in production
Verifier = Callable[[str, bytes, bytes], bool]


def canonical_bytes(receipt: Receipt) -> bytes:
    """The one byte spelling of ``receipt``: sorted keys, no spaces, ASCII, no floats."""
    return json.dumps(
        receipt.model_dump(mode="json"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    ).encode("ascii")


def signing_payload(receipt: Receipt) -> bytes:
    """The bytes the validator and the miner sign: ``frame(RECEIPT_TAG, canonical_bytes)``."""
    return frame(RECEIPT_TAG, canonical_bytes(receipt))


def parse_canonical(data: bytes) -> Receipt:
    """A receipt from its canonical bytes; raises ``MalformedMessage`` unless they are canonical.

    Refusing non-canonical spellings means two different byte strings never stand for one
    receipt, so a stored payload and its signatures always match the parsed receipt exactly.
    """
    try:
        receipt = Receipt.model_validate_json(data, strict=True)
    except ValueError as exc:
        raise MalformedMessage(f"not a receipt: {type(exc).__name__}") from None
    if canonical_bytes(receipt) != data:
        raise MalformedMessage("receipt bytes are not in canonical form")
    return receipt


def same_content(a: Receipt, b: Receipt) -> bool:
    return canonical_bytes(a) == canonical_bytes(b)


# --------------------------------------------------------------------------- checks


def check_receipt(
    receipt: Receipt,
    *,
    now: int,
    skew_s: int = DEFAULT_SKEW_S,
    max_period_s: int = MAX_PERIOD_S,
) -> None:
    """The rules one receipt must follow on its own; raises ``MalformedMessage``.

    * the period is not inverted and at most ``max_period_s`` long;
    * a "start" receipt has ``seq`` 0 and a zero-length period; other kinds have ``seq >= 1``;
    * it was issued after its period ended (usage is billed after the fact);
    * neither the period nor the issue time lies in the future (``now`` plus ``skew_s``).
    """
    if receipt.period_end < receipt.period_start:
        raise MalformedMessage(
            f"period ends ({receipt.period_end}) before it starts ({receipt.period_start})"
        )
    if receipt.seconds > max_period_s:
        raise MalformedMessage(
            f"period of {receipt.seconds} s is longer than the {max_period_s} s allowed"
        )
    if receipt.kind == "start":
        if receipt.seq != 0:
            raise MalformedMessage(f"a start receipt has seq 0, not {receipt.seq}")
        if receipt.seconds != 0:
            raise MalformedMessage("a start receipt bills nothing: its period has zero length")
    elif receipt.seq == 0:
        raise MalformedMessage(f"seq 0 is the start receipt, not a {receipt.kind} one")
    if receipt.issued_at < receipt.period_end:
        raise MalformedMessage("a receipt is issued after the period it bills, not before")
    latest = now + skew_s
    if receipt.period_end > latest or receipt.issued_at > latest:
        raise MalformedMessage(
            f"receipt is dated in the future (issued {receipt.issued_at}, now {now})"
        )


def check_successor(previous: Receipt | None, receipt: Receipt) -> None:
    """Whether ``receipt`` may follow ``previous``, the latest receipt of the same validator and
    lease (``None`` when there is none); raises ``Forbidden``.

    Sequence numbers only grow, periods do not overlap, nothing follows an "end" receipt, and the
    lease's fixed terms (miner, worker, GPUs, netuid) do not change. The price may change (a
    lease extended at a new price). Resending a receipt with identical content is not a
    successor: callers compare with :func:`same_content` first.
    """
    if previous is None:
        return
    if (previous.validator_hotkey, previous.lease_id) != (
        receipt.validator_hotkey,
        receipt.lease_id,
    ):
        raise ValueError("check_successor compares receipts of one validator and lease")
    if previous.kind == "end":
        raise Forbidden(
            f"lease {receipt.lease_id} already has its end receipt (seq {previous.seq})"
        )
    if receipt.seq <= previous.seq:
        raise Forbidden(
            f"seq {receipt.seq} of lease {receipt.lease_id} is not after seq {previous.seq}"
        )
    if receipt.period_start < previous.period_end:
        raise Forbidden(
            f"receipt seq {receipt.seq} starts at {receipt.period_start}, before the previous "
            f"one ended ({previous.period_end})"
        )
    fixed = ("netuid", "miner_hotkey", "worker_pubkey", "gpu_uuids")
    changed = [name for name in fixed if getattr(previous, name) != getattr(receipt, name)]
    if changed:
        raise Forbidden(f"receipt seq {receipt.seq} changes {', '.join(changed)} of the lease")


def check_chain(receipts: Iterable[Receipt]) -> list[Receipt]:
    """One validator's receipts of one lease, sorted by ``seq`` and checked pairwise.

    Identical duplicates (the same receipt fetched twice) are dropped; anything else that
    breaks :func:`check_successor` raises ``Forbidden``.
    """
    ordered = sorted(receipts, key=lambda r: r.seq)
    out: list[Receipt] = []
    for receipt in ordered:
        previous = out[-1] if out else None
        if previous is not None and previous.seq == receipt.seq:
            if same_content(previous, receipt):
                continue
            raise Forbidden(f"seq {receipt.seq} of lease {receipt.lease_id} has two contents")
        check_successor(previous, receipt)
        out.append(receipt)
    return out


def verify_signatures(signed: SignedReceipt, verify: Verifier) -> None:
    """Both signatures, each against the hotkey the receipt names; raises
    ``VerificationFailed(BAD_SIGNATURE)`` naming the party whose signature fails."""
    payload = signing_payload(signed.receipt)
    receipt = signed.receipt
    if not verify(receipt.validator_hotkey, payload, signed.validator_signature):
        raise VerificationFailed(
            FraudReason.BAD_SIGNATURE, f"validator signature of receipt {receipt.lease_id}"
        )
    if not verify(receipt.miner_hotkey, payload, signed.miner_signature):
        raise VerificationFailed(
            FraudReason.BAD_SIGNATURE, f"miner signature of receipt {receipt.lease_id}"
        )


def lease_usage(
    receipt: Receipt,
    *,
    validator_share: float,
    price_caps: Mapping[str, float],
    lease_id: str | None = None,
) -> ReceiptUsage:
    """The scorer's view of a receipt (``byteleap.scoring.lease_scores`` takes these).

    ``validator_share`` is the seller's stake share among the validators whose receipts count,
    and ``price_caps`` the cap per GPU-hour of each of the receipt's GPUs by UUID, from the
    scoring validator's price table and its inventory's model of that GPU; a GPU missing from
    ``price_caps`` raises ``KeyError`` (the caller decides what an unknown GPU is capped at).
    ``lease_id`` defaults to the receipt's own, which is unique per seller only.
    """
    return ReceiptUsage(
        miner_hotkey=receipt.miner_hotkey,
        lease_id=receipt.lease_id if lease_id is None else lease_id,
        price_per_gpu_hour=receipt.price_per_gpu_hour_micros / MICROS,
        gpus=receipt.gpus,
        start=datetime.fromtimestamp(receipt.period_start, UTC),
        end=datetime.fromtimestamp(receipt.period_end, UTC),
        validator_hotkey=receipt.validator_hotkey,
        validator_share=validator_share,
        gpu_uuids=tuple(receipt.gpu_uuids),
        gpu_price_caps=tuple(price_caps[uuid] for uuid in receipt.gpu_uuids),
    )


__all__ = [
    "DEFAULT_SKEW_S",
    "MAX_PERIOD_S",
    "MAX_PRICE_MICROS",
    "MICROS",
    "RECEIPT_TAG",
    "RECEIPT_VERSION",
    "Receipt",
    "ReceiptKind",
    "SignedReceipt",
    "Verifier",
    "canonical_bytes",
    "check_chain",
    "check_receipt",
    "check_successor",
    "lease_usage",
    "parse_canonical",
    "same_content",
    "signing_payload",
    "verify_signatures",
]
