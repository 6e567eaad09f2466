"""The wire protocol: one frozen, strictly validated pydantic model per message, and the codec.

Import a message from the module that defines it; this package re-exports only the codec,
the shared field types, the handshake and the host inventory.

* :mod:`.worker_link`: worker <-> miner websocket messages, by purpose (``.session``,
  ``.challenges``, ``.leases``, ``.jobs``); the package holds the unions the codec decodes with.
* :mod:`.miner_api`: validator -> miner HTTP bodies, by purpose (``.inventory``,
  ``.challenges``, ``.forward``, ``.receipts``, ``.errors``).
* :mod:`.inventory`: what a worker reports about its host and GPUs.
* :mod:`.handshake`: the worker's signed answer to the miner's nonce.
* :mod:`.codec`: binary frames with raw blobs, size limits, typed errors.

``docs/protocol.md`` describes the messages, the frame format and the flows.
"""

from byteleap.protocol.codec import (
    MAGIC,
    MAX_BLOBS,
    MAX_HEADER_BYTES,
    MAX_JSON_DEPTH,
    MINER_RESPONSE,
    MINER_TO_WORKER,
    VALIDATOR_API,
    VALIDATOR_API_MAX_BYTES,
    VALIDATOR_REQUEST,
    WORKER_LINK,
    WORKER_LINK_MAX_BYTES,
    WORKER_TO_MINER,
    api_error_for,
    decode,
    encode,
    encode_text,
    error_reply_for,
)
from byteleap.protocol.common import (
    MAX_DEPTH,
    MAX_GPUS,
    MAX_OPENING_REQUESTS,
    MAX_OPENINGS,
    PROTOCOL_VERSION,
    Message,
    WireModel,
)
from byteleap.protocol.handshake import (
    HANDSHAKE_TAG,
    handshake_payload,
    make_register,
    verify_register,
)
from byteleap.protocol.inventory import DiskInfo, GpuInfo, HostInfo, Inventory

__all__ = [
    "HANDSHAKE_TAG",
    "MAGIC",
    "MAX_BLOBS",
    "MAX_DEPTH",
    "MAX_GPUS",
    "MAX_HEADER_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_OPENINGS",
    "MAX_OPENING_REQUESTS",
    "MINER_RESPONSE",
    "MINER_TO_WORKER",
    "PROTOCOL_VERSION",
    "VALIDATOR_API",
    "VALIDATOR_API_MAX_BYTES",
    "VALIDATOR_REQUEST",
    "WORKER_LINK",
    "WORKER_LINK_MAX_BYTES",
    "WORKER_TO_MINER",
    "DiskInfo",
    "GpuInfo",
    "HostInfo",
    "Inventory",
    "Message",
    "WireModel",
    "api_error_for",
    "decode",
    "encode",
    "encode_text",
    "error_reply_for",
    "handshake_payload",
    "make_register",
    "verify_register",
]
