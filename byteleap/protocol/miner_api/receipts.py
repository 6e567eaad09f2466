"""Receipt bodies of the validator -> miner HTTP API: ``POST /lease/receipt``, ``GET /receipts``."""

from __future__ import annotations

from typing import Annotated, Final, Literal, Self

from pydantic import Field, model_validator

from byteleap.protocol.common import (
    MAX_GPUS,
    MAX_U63,
    GpuUuid,
    Hotkey,
    Identifier,
    Message,
    PublicKeyHex,
    Seq,
    Signature,
    UnixSeconds,
    WireModel,
    distinct,
)

#: most receipts in one ``GET /receipts`` page (keeps the page's JSON header far below its cap)
MAX_RECEIPTS_PAGE = 200
#: the receipt format this code writes and reads
RECEIPT_VERSION: Final = 1
#: highest price per GPU-hour a receipt may carry, in micro-units (a billion units)
MAX_PRICE_MICROS = 10**15

ReceiptKind = Literal["start", "hourly", "end"]


# --------------------------------------------------------------------------- receipts


class Receipt(WireModel):
    """One usage receipt (``byteleap.leases.receipts`` has its canonical bytes and rules).

    Build it, then sign ``byteleap.leases.receipts.signing_payload(receipt)``.
    """

    version: Literal[1] = 1
    netuid: Annotated[int, Field(ge=0, le=65_535)]
    lease_id: Identifier
    #: position in this validator's chain for the lease: 0 for "start", then growing
    seq: Seq
    kind: ReceiptKind
    validator_hotkey: Hotkey
    miner_hotkey: Hotkey
    worker_pubkey: PublicKeyHex
    #: the leased GPUs, sorted
    gpu_uuids: Annotated[list[GpuUuid], Field(min_length=1, max_length=MAX_GPUS)]
    #: ``len(gpu_uuids)``, spelled out so a reader of the JSON sees the billed count
    gpus: Annotated[int, Field(ge=1, le=MAX_GPUS)]
    #: price per GPU-hour in micro-units of the validator's currency
    price_per_gpu_hour_micros: Annotated[int, Field(ge=0, le=MAX_PRICE_MICROS)]
    #: the usage this receipt bills: ``[period_start, period_end)``, unix seconds
    period_start: UnixSeconds
    period_end: UnixSeconds
    #: when the validator issued it, unix seconds
    issued_at: UnixSeconds

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if not distinct(self.gpu_uuids):
            raise ValueError("gpu_uuids must be distinct")
        if self.gpu_uuids != sorted(self.gpu_uuids):
            raise ValueError("gpu_uuids must be sorted")
        if self.gpus != len(self.gpu_uuids):
            raise ValueError(f"gpus is {self.gpus} but {len(self.gpu_uuids)} GPUs are listed")
        return self

    @property
    def seconds(self) -> int:
        """Length of the billed period."""
        return self.period_end - self.period_start

    @property
    def amount_micros(self) -> int:
        """What the period costs, in micro-units, rounded down: ``price × gpus × hours``."""
        return self.price_per_gpu_hour_micros * self.gpus * self.seconds // 3600


class SignedReceipt(WireModel):
    """A receipt with the validator's signature and (once countersigned) the miner's."""

    receipt: Receipt
    #: the validator hotkey's sr25519 signature of ``signing_payload(receipt)``
    validator_signature: Signature
    #: the miner hotkey's sr25519 signature of the same bytes
    miner_signature: Signature


class ReceiptSubmitRequest(Message):
    """``POST /lease/receipt``: a receipt the calling validator signed, for the miner to
    countersign (``byteleap.leases.receipts``)."""

    type: Literal["receipt_submit_request"] = "receipt_submit_request"
    receipt: Receipt
    #: the caller's sr25519 signature of ``signing_payload(receipt)``
    validator_signature: Signature


class ReceiptSubmitResponse(Message):
    """The receipt with both signatures, as the miner stored it."""

    type: Literal["receipt_submit_response"] = "receipt_submit_response"
    signed: SignedReceipt
    #: the receipt's position in ``GET /receipts``
    cursor: Annotated[int, Field(ge=1, le=MAX_U63)]


class ReceiptPage(Message):
    """``GET /receipts?after=<cursor>&limit=<n>``: stored receipts after ``cursor``, oldest first.

    ``cursors[i]`` is the position of ``receipts[i]``; ask again with ``after=next_cursor``
    while ``more`` is true.
    """

    type: Literal["receipt_page"] = "receipt_page"
    miner_hotkey: Hotkey
    receipts: Annotated[list[SignedReceipt], Field(max_length=MAX_RECEIPTS_PAGE)] = Field(
        default_factory=list
    )
    cursors: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_U63)]], Field(max_length=MAX_RECEIPTS_PAGE)
    ] = Field(default_factory=list)
    next_cursor: Annotated[int, Field(ge=0, le=MAX_U63)]
    more: bool

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(self.cursors) != len(self.receipts):
            raise ValueError("one cursor per receipt")
        if any(b <= a for a, b in zip(self.cursors, self.cursors[1:], strict=False)):
            raise ValueError("cursors must increase")
        return self


__all__ = [
    "MAX_PRICE_MICROS",
    "MAX_RECEIPTS_PAGE",
    "RECEIPT_VERSION",
    "Receipt",
    "ReceiptKind",
    "ReceiptPage",
    "ReceiptSubmitRequest",
    "ReceiptSubmitResponse",
    "SignedReceipt",
]
