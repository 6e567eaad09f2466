"""Bodies of the validator -> miner HTTP API (SPEC 1, 2, 4 and 6), by purpose.

* :mod:`.inventory`: ``GET /inventory`` and ``GET /health``;
* :mod:`.challenges`: ``POST /challenge``, ``POST /epoch``, ``POST /reveal`` and the evidence
  the miner signs;
* :mod:`.forward`: ``POST /forward`` (worker-link lease and job messages to the worker of a
  lease) and ``POST /lease/status``;
* :mod:`.receipts`: ``POST /lease/receipt`` and ``GET /receipts``;
* :mod:`.errors`: ``ApiError`` and its HTTP status.

This package holds only the unions the codec decodes with; import a body from its module.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from byteleap.protocol.miner_api.challenges import (
    ChallengeRequest,
    ChallengeResponse,
    EpochFailure,
    EpochRequest,
    OpeningsRequest,
    OpeningsResponse,
)
from byteleap.protocol.miner_api.errors import ApiError
from byteleap.protocol.miner_api.forward import (
    ForwardRequest,
    ForwardResponse,
    LeaseStatusRequest,
    LeaseStatusResponse,
)
from byteleap.protocol.miner_api.inventory import HealthResponse, InventoryResponse
from byteleap.protocol.miner_api.receipts import (
    ReceiptPage,
    ReceiptSubmitRequest,
    ReceiptSubmitResponse,
)

ValidatorRequest = Annotated[
    ChallengeRequest
    | EpochRequest
    | OpeningsRequest
    | LeaseStatusRequest
    | ReceiptSubmitRequest
    | ForwardRequest,
    Field(discriminator="type"),
]
"""Every body a validator sends."""

MinerResponse = Annotated[
    InventoryResponse
    | ChallengeResponse
    | EpochFailure
    | OpeningsResponse
    | LeaseStatusResponse
    | ReceiptSubmitResponse
    | ForwardResponse
    | ReceiptPage
    | HealthResponse
    | ApiError,
    Field(discriminator="type"),
]
"""Every body a miner answers with."""

ValidatorApiMessage = Annotated[
    InventoryResponse
    | ChallengeRequest
    | ChallengeResponse
    | EpochRequest
    | EpochFailure
    | OpeningsRequest
    | OpeningsResponse
    | LeaseStatusRequest
    | LeaseStatusResponse
    | ReceiptSubmitRequest
    | ReceiptSubmitResponse
    | ForwardRequest
    | ForwardResponse
    | ReceiptPage
    | HealthResponse
    | ApiError,
    Field(discriminator="type"),
]
"""Every body of the validator API, either direction."""

__all__ = ["MinerResponse", "ValidatorApiMessage", "ValidatorRequest"]
