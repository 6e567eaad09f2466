"""Building blocks shared by every wire message: the base class, the version, bounded field types.

Every message is a frozen pydantic model with ``extra="forbid"`` and strict validation, so a peer
cannot smuggle fields, coerce ``"1"`` into ``1`` or ``true`` into ``1``. Every string, byte string
and list has an upper bound: no field of any message can make a receiver allocate more than the
link's size limit already allowed, and no list can be long enough to make validation slow.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from byteleap.challenge.params import MAX_DIM, MAX_STAGES

#: the only protocol version this code speaks; a message with another is ``UnsupportedVersion``
PROTOCOL_VERSION = 1

#: most GPUs one worker (host) may report, have challenged or lease at once. A worker is one
#: host: 8 GPUs is the usual maximum (HGX/DGX boards) and 16 the largest single systems built
#: (HGX-2/DGX-2 class); a worker with more devices reports the first 16
MAX_GPUS = 16
#: most workers one miner may list in its inventory (and so challenge in one epoch): a miner is one
#: gateway process in front of its hosts, and 1,024 hosts of up to 16 GPUs (16,384 GPUs) is
#: far beyond any one operator's hotkey; more capacity can register more hotkeys
MAX_WORKERS = 1024
#: an inventory's bytes that are neither workers nor GPUs: prefix, ``type``, version, hotkey
INVENTORY_ENVELOPE_BYTES = 256
#: bytes budgeted per listed worker, its GPUs aside (about 200 as a miner encodes a worker
#: with a short ``agent_version`` and two backends)
INVENTORY_WORKER_BYTES = 768
#: bytes budgeted per listed GPU (about 150 as a miner encodes an NVML UUID, an NVML name such
#: as ``NVIDIA H100 80GB HBM3``, its memory and compute capability)
INVENTORY_GPU_BYTES = 200


def inventory_max_bytes(workers: int, gpus_per_worker: int) -> int:
    """The largest ``GET /inventory`` body accepted from a miner that may list ``workers``
    workers of ``gpus_per_worker`` GPUs each (``MAX_INVENTORY_BYTES`` at the protocol maxima)."""
    return INVENTORY_ENVELOPE_BYTES + workers * (
        INVENTORY_WORKER_BYTES + gpus_per_worker * INVENTORY_GPU_BYTES
    )


#: largest inventory body at the protocol maxima: 4,063,488 bytes, just under the codec's 4 MiB
#: JSON-header cap, so that cap never refuses an inventory these limits allow
MAX_INVENTORY_BYTES = inventory_max_bytes(MAX_WORKERS, MAX_GPUS)
#: deepest Merkle tree: ``m <= MAX_DIM`` rows gives ``log2(MAX_DIM)`` levels
MAX_DEPTH = MAX_DIM.bit_length() - 1
#: most rows one reveal may open, over all GPUs and stages
MAX_OPENINGS = 16_384
#: most (GPU, stage) pairs one reveal request may name
MAX_OPENING_REQUESTS = 4096
#: most rows one opening request may name (the SamplingParams cap on ``s``)
MAX_ROWS_PER_STAGE = 4096
#: largest row: ``n`` int32 values
MAX_ROW_BYTES = 4 * MAX_DIM
#: largest commitment: one 32-byte root per stage
MAX_ROOTS_BYTES = 32 * MAX_STAGES
#: largest Merkle path
MAX_PROOF_BYTES = 32 * MAX_DEPTH
#: bound for free-text fields (reasons, error messages)
MAX_TEXT = 1024
#: largest unsigned 63-bit value, the bound for counters and byte counts
MAX_U63 = 2**63 - 1
#: unix seconds: anything after the year 9999 is nonsense
MAX_UNIX_SECONDS = 253_402_300_799


def _no_surrogates(value: str) -> str:
    # JSON can spell a lone surrogate ("\ud800"); such a string cannot be encoded as UTF-8 again,
    # so it could not be re-sent, logged as UTF-8 or framed into a signed payload.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("string contains a lone surrogate") from None
    return value


_Utf8 = AfterValidator(_no_surrogates)

#: printable ASCII without spaces: identifiers, hotkeys, GPU UUIDs
_PRINTABLE = r"^[\x21-\x7e]+$"

#: an id chosen by the sender (challenge, lease, session): letters, digits and ``._:-``
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
#: a bittensor hotkey in ss58 (or the devchain's stand-in): printable ASCII, no spaces
Hotkey = Annotated[str, Field(min_length=1, max_length=64, pattern=_PRINTABLE)]
#: a GPU's NVML UUID as NVML prints it (``GPU-…`` or ``MIG-…``)
GpuUuid = Annotated[str, Field(min_length=1, max_length=128, pattern=_PRINTABLE)]
#: an opaque printable token: a message ``type``, an id, a counter in decimal
Token = Annotated[str, Field(min_length=1, max_length=128, pattern=_PRINTABLE)]
#: a short machine-readable code, e.g. ``ByteLeapError.code``
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.]+$")]
#: a worker's raw ed25519 public key
PublicKey = Annotated[bytes, Field(min_length=32, max_length=32)]
#: a worker's ed25519 public key as 64 lowercase hex digits (the validator API's spelling)
PublicKeyHex = Annotated[str, Field(min_length=64, max_length=64, pattern=r"^[0-9a-f]+$")]
#: 32 random or hashed bytes (nonce, seed)
Bytes32 = Annotated[bytes, Field(min_length=32, max_length=32)]
#: an ed25519 (worker) or sr25519 (hotkey) signature
Signature = Annotated[bytes, Field(min_length=64, max_length=64)]
#: a stage index ``t``
Stage = Annotated[int, Field(ge=0, lt=MAX_STAGES)]
#: a row index ``i``
Row = Annotated[int, Field(ge=0, lt=MAX_DIM)]
#: a monotonically increasing counter
Seq = Annotated[int, Field(ge=0, le=MAX_U63)]
#: unix time in whole seconds
UnixSeconds = Annotated[int, Field(ge=0, le=MAX_UNIX_SECONDS)]
#: a relative deadline: at most one hour
DeadlineMs = Annotated[int, Field(ge=1, le=3_600_000)]
#: free text such as a reason or an error message
Text = Annotated[str, Field(max_length=MAX_TEXT), _Utf8]
#: a short human-readable name (GPU model, version string, hostname)
Name = Annotated[str, Field(max_length=256), _Utf8]
#: a short non-empty name
ShortName = Annotated[str, Field(min_length=1, max_length=128), _Utf8]
#: a non-negative finite float
NonNegFloat = Annotated[float, Field(ge=0.0)]


class WireModel(BaseModel):
    """A part of a message: frozen, no extra fields, strict types, finite floats."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Message(WireModel):
    """A whole message: a ``type`` discriminator (set by each subclass) and ``protocol_version``.

    The codec checks ``protocol_version`` before validation so that a peer speaking another version
    gets ``UnsupportedVersion`` rather than a validation error; the validator below only stops a
    local caller from building a message of a version we do not speak.
    """

    protocol_version: int = PROTOCOL_VERSION

    @field_validator("protocol_version")
    @classmethod
    def _check_version(cls, value: int) -> int:
        if value != PROTOCOL_VERSION:
            raise ValueError(f"protocol_version must be {PROTOCOL_VERSION}")
        return value

    @classmethod
    def message_type(cls) -> str:
        """The ``type`` discriminator of this message class."""
        value = cls.model_fields["type"].default
        assert isinstance(value, str), f"{cls.__name__} has no literal type"
        return value


def distinct(values: list[Any]) -> bool:
    """True when no value occurs twice."""
    return len(set(values)) == len(values)


def check_distinct_gpus(uuids: list[str]) -> None:
    """Raise ``ValueError`` (a validation error of the model) when a GPU is listed twice."""
    if not distinct(uuids):
        raise ValueError("gpu_uuids must be distinct")


__all__ = [
    "INVENTORY_ENVELOPE_BYTES",
    "INVENTORY_GPU_BYTES",
    "INVENTORY_WORKER_BYTES",
    "MAX_DEPTH",
    "MAX_GPUS",
    "MAX_INVENTORY_BYTES",
    "MAX_OPENINGS",
    "MAX_OPENING_REQUESTS",
    "MAX_PROOF_BYTES",
    "MAX_ROOTS_BYTES",
    "MAX_ROWS_PER_STAGE",
    "MAX_ROW_BYTES",
    "MAX_TEXT",
    "MAX_U63",
    "MAX_UNIX_SECONDS",
    "MAX_WORKERS",
    "PROTOCOL_VERSION",
    "Bytes32",
    "Code",
    "DeadlineMs",
    "GpuUuid",
    "Hotkey",
    "Identifier",
    "Message",
    "Name",
    "NonNegFloat",
    "PublicKey",
    "PublicKeyHex",
    "Row",
    "Seq",
    "ShortName",
    "Signature",
    "Stage",
    "Text",
    "Token",
    "UnixSeconds",
    "WireModel",
    "check_distinct_gpus",
    "distinct",
    "inventory_max_bytes",
]
