"""The miner's HTTP API for validators (SPEC 1, 2, 4 and 6); see docs/protocol-http.md.

``create_app`` builds a FastAPI application with no module-level state: the services
(:mod:`.inventory`, :mod:`.challenges`, :mod:`.leases`, :mod:`.receipts`) are built once and
kept on ``app.state.api``; the routes (:mod:`.routes`) are a few lines each over them, with the
caller's identity, rate limit and decoded body as ``Annotated`` dependencies (:mod:`.deps`).
Every route except ``GET /health`` requires a ``btauth/1`` signature by a permitted validator
(:mod:`neurons.miner.auth`); :mod:`.deps` lists the order of the checks.

Bodies are codec frames (:data:`CONTENT_TYPE`) both ways; every non-2xx answer is an ``ApiError``
frame with ``http_status_for(exc)`` as its status (:mod:`.http`).

Leases live in a :class:`~byteleap.sessions.miner_leases.LeaseTable`, written through to the
miner's SQLite store when one is given; :class:`~.leases.LeaseService` carries out what it says.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from byteleap.config.miner import MinerApiSection
from byteleap.leases.receipts import DEFAULT_SKEW_S, Verifier
from byteleap.protocol.common import MAX_TEXT
from byteleap.protocol.miner_api.errors import ApiError
from byteleap.sessions.miner_leases import LeaseTable
from neurons.common.miner_client import verify_hotkey_signature
from neurons.miner.api.challenges import CHALLENGE_SLACK_S, ChallengeService
from neurons.miner.api.deps import MinerApi
from neurons.miner.api.http import CONTENT_TYPE, frame
from neurons.miner.api.inventory import InventoryService
from neurons.miner.api.leases import LeaseService
from neurons.miner.api.ratelimit import TokenBuckets
from neurons.miner.api.receipts import RECEIPT_RETENTION_S, ReceiptService
from neurons.miner.api.routes import router
from neurons.miner.auth import ValidatorGate
from neurons.miner.ports import WorkerDirectory
from neurons.miner.store import MinerStore


def create_app(
    *,
    miner_hotkey: str,
    signer: Callable[[bytes], bytes],
    gate: ValidatorGate,
    workers: WorkerDirectory,
    config: MinerApiSection,
    clock: Callable[[], float] = time.time,
    version: str = "0",
    rate_per_second: float = 20.0,
    rate_burst: int = 60,
    health_rate_per_second: float = 5.0,
    health_burst: int = 20,
    store: MinerStore | None = None,
    netuid: int | None = None,
    verify_signature: Verifier = verify_hotkey_signature,
    receipt_skew_s: int = DEFAULT_SKEW_S,
    receipt_retention_s: float = RECEIPT_RETENTION_S,
) -> FastAPI:
    """The validator API of one miner.

    ``signer`` signs bytes with the miner's hotkey (``wallet.hotkey.sign``). ``config`` is the
    ``api`` section (:class:`byteleap.config.miner.MinerApiSection`); only ``max_body_bytes`` and
    ``request_timeout_s`` are read. ``clock`` is unix time (lease ends, uptime, rate buckets).
    ``rate_*`` is the per-validator token bucket of the authenticated routes; ``health_*`` the
    per-client-IP bucket of the public ``/health``.

    ``store`` keeps leases and countersigned receipts on disk; its leases are loaded now. Without
    one, both live in memory only (an in-memory store is made for the receipts). ``netuid``, when
    given, is the only subnet whose receipts are countersigned. ``verify_signature`` checks a
    validator's sr25519 signature on a receipt; ``receipt_skew_s`` is the clock difference
    tolerated in receipt periods; receipts are kept ``receipt_retention_s``.
    """
    request_timeout = float(config.request_timeout_s)
    table = LeaseTable.from_records(store.load_leases() if store is not None else [])
    leases = LeaseService(table, workers, store=store, clock=clock, request_timeout=request_timeout)
    app = FastAPI(
        title="ByteLeap miner validator API",
        version=version,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.api = MinerApi(
        gate=gate,
        buckets=TokenBuckets(rate_per_second, rate_burst, clock),
        health_buckets=TokenBuckets(health_rate_per_second, health_burst, clock),
        max_body=int(config.max_body_bytes),
        inventory=InventoryService(miner_hotkey, workers, clock, version, clock()),
        challenges=ChallengeService(
            miner_hotkey=miner_hotkey,
            signer=signer,
            workers=workers,
            leases=leases,
            request_timeout=request_timeout,
        ),
        leases=leases,
        receipts=ReceiptService(
            miner_hotkey=miner_hotkey,
            signer=signer,
            leases=leases,
            store=store,
            clock=clock,
            netuid=netuid,
            verify_signature=verify_signature,
            skew_s=receipt_skew_s,
            retention_s=receipt_retention_s,
        ),
    )
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(router)
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """404 and 405 (no such route or method) as ``ApiError`` frames too."""
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, f"http_{exc.status_code}")
    message = str(exc.detail)[:MAX_TEXT] or code
    return frame(ApiError(code=code, message=message), exc.status_code)


__all__ = ["CHALLENGE_SLACK_S", "CONTENT_TYPE", "RECEIPT_RETENTION_S", "create_app"]
