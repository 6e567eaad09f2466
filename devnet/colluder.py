"""A receipt_mint cheater's colluding validator, for ``byteleap devnet`` only.

    python -m devnet.colluder run -c colluder.yaml --miner-endpoint 127.0.0.1:PORT \
        --ledger RUN_DIR/data/colluder-1/minted.jsonl --start-file RUN_DIR/data/colluder-1/start

It is the real validator: the same config model, wallet, store, devchain and
:class:`~neurons.validator.daemon.ValidatorDaemon` with every one of its loops (the devnet gives
it rare epochs: a colluder does not bother to test the network). It holds a validator permit and
a small stake. Next to the daemon runs one devnet-only loop, :class:`ReceiptMint`, which sells
capacity to nobody:

1. it finds the miner that serves ``--miner-endpoint`` on the devchain (the metagraph its daemon
   syncs), and waits for ``--start-file`` (the devnet creates it after the rounds, when the
   renters start; without the option it starts at once);
2. it asks the miner for its workers (``GET /inventory``) and leases every GPU of each through the
   miner's real ``POST /forward`` (a ``LeaseStart`` for the worker), with no renter behind the
   lease. It has to: the miner countersigns a receipt only for a lease it routed, for the
   validator that started it, with that lease's worker and GPUs and within its life;
3. it signs a start receipt, then every ``leases.receipt_interval_s`` an hourly receipt for the
   seconds since the last one, and has the miner countersign each through ``POST
   /lease/receipt``. The miner signs them: it gains from them.

Every validator then fetches these receipts from the miner (``GET /receipts``) like any other.
The colluder's signature and the miner's are genuine, so nothing but the rule that receipts count
in proportion to their seller's stake share (SPEC 5.5) keeps the miner from earning the lease
pool with them. Each lease and receipt is one JSON line in ``--ledger``, which the devnet reads
for its report (:func:`read_ledger`).

The production validator has no way to do this: this entry point is not installed as a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol

import structlog
import typer

from byteleap.config import ValidatorConfig
from byteleap.errors import ByteLeapError
from byteleap.leases.receipts import MICROS
from byteleap.protocol.miner_api.forward import ForwardedAnswer, ForwardedMessage
from byteleap.protocol.miner_api.inventory import InventoryResponse
from byteleap.protocol.miner_api.receipts import Receipt, ReceiptKind, ReceiptSubmitResponse
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart
from daemonkit.cli import ConfigOption, fail, load_or_exit
from daemonkit.signals import run_daemon

log = structlog.get_logger("byteleap.devnet.colluder")

#: how long a colluding lease is booked for (the devnet ends long before)
LEASE_S = 3600
#: seconds between two looks for the miner, the start file or the miner's workers
POLL_S = 0.25
#: the model id the colluder prices the devnet's CPU devices at
PRICE_MODEL = "cpu"


class MintClient(Protocol):
    """What the colluder needs of a miner's API (``MinerClient`` signed with its hotkey)."""

    async def inventory(self) -> InventoryResponse: ...

    async def forward(self, worker_pubkey: str, message: ForwardedMessage) -> ForwardedAnswer: ...

    async def submit_receipt(self, receipt: Receipt) -> ReceiptSubmitResponse: ...


@dataclass
class MintedLease:
    """A lease the colluder started without a renter, and where its receipts are."""

    lease_id: str
    worker_pubkey: str
    gpu_uuids: list[str]
    started_at: int
    #: the last receipt's seq (-1 before the start receipt) and where its period ended
    seq: int = -1
    last_end: int = 0


@dataclass
class Ledger:
    """The JSON lines file the colluder writes and the devnet reads."""

    path: Path

    def write(self, event: str, **fields: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"event": event, "at": time.time(), **fields}, sort_keys=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")


@dataclass(frozen=True)
class LedgerSummary:
    """What a colluder did, from its ledger."""

    miner_hotkey: str | None = None
    leases: int = 0
    #: countersigned receipts, the start receipts included
    receipts: int = 0
    #: GPU-seconds its countersigned receipts bill
    billed_gpu_s: int = 0
    #: wall-clock time of its first receipt that bills something (None: none yet)
    first_billed_at: float | None = None
    #: refusals and errors, by the step they happened in
    errors: Mapping[str, int] = field(default_factory=dict)


def read_ledger(path: Path) -> LedgerSummary:
    """Sum up a colluder's ledger (an empty summary when there is none yet). A line cut short
    by a write in progress is skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return LedgerSummary()
    miner: str | None = None
    leases = receipts = billed = 0
    first: float | None = None
    errors: dict[str, int] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        event = entry.get("event")
        if event == "miner":
            miner = str(entry.get("miner_hotkey"))
        elif event == "lease":
            leases += 1
        elif event == "receipt":
            receipts += 1
            seconds = int(entry.get("seconds") or 0) * int(entry.get("gpus") or 0)
            billed += seconds
            if seconds > 0 and first is None:
                first = float(entry["at"])
        elif event == "error":
            step = str(entry.get("step"))
            errors[step] = errors.get(step, 0) + 1
    return LedgerSummary(miner, leases, receipts, billed, first, errors)


class ReceiptMint:
    """The colluder's loop (see the module docstring). ``find_miner`` returns the hotkey of the
    miner at the endpoint once the metagraph shows it; ``connect`` makes a client of it signed
    with the colluder's hotkey."""

    def __init__(
        self,
        *,
        hotkey: str,
        netuid: int,
        find_miner: Callable[[], Awaitable[str | None]],
        connect: Callable[[str], MintClient],
        ledger: Ledger,
        price_per_gpu_hour: float,
        interval_s: float,
        start_file: Path | None = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = POLL_S,
    ) -> None:
        self.hotkey = hotkey
        self.netuid = netuid
        self.find_miner = find_miner
        self.connect = connect
        self.ledger = ledger
        self.price_micros = round(price_per_gpu_hour * MICROS)
        self.interval_s = interval_s
        self.start_file = start_file
        self.clock = clock
        self.poll_s = poll_s
        self.miner_hotkey: str | None = None
        self.leases: dict[str, MintedLease] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Find the miner, wait for the start, lease its workers, then mint until ``stop``."""
        miner = await self._until(stop, self.find_miner)
        if miner is None:
            return
        self.miner_hotkey = miner
        self.ledger.write("miner", miner_hotkey=miner)
        log.info("colluding", miner=miner)
        if self.start_file is not None:
            start_file = self.start_file

            async def started() -> bool | None:
                return True if start_file.exists() else None

            if await self._until(stop, started) is None:
                return
        client = self.connect(miner)
        try:
            while not stop.is_set():
                if not self.leases or not await self._all_leased(client):
                    await self.lease_workers(client)
                await self.mint(client)
                if await _wait(stop, self.interval_s if self.leases else self.poll_s):
                    return
        finally:
            close = getattr(client, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    async def _until(self, stop: asyncio.Event, probe: Callable[[], Awaitable[Any]]) -> Any | None:
        while not stop.is_set():
            try:
                found = await probe()
            except ByteLeapError as exc:
                log.info("colluder_waiting", error=exc.message)
                found = None
            if found is not None:
                return found
            if await _wait(stop, self.poll_s):
                break
        return None

    async def _all_leased(self, client: MintClient) -> bool:
        """Whether every worker the miner lists is under one of the colluder's leases."""
        try:
            inventory = await client.inventory()
        except ByteLeapError:
            return True  # ask again later
        mine = {lease.worker_pubkey for lease in self.leases.values()}
        return all(w.worker_pubkey in mine for w in inventory.workers if w.gpus)

    async def lease_workers(self, client: MintClient) -> None:
        """Start a lease of every GPU of every worker the miner lists and the colluder does not
        hold yet, and sign each lease's start receipt."""
        try:
            inventory = await client.inventory()
        except ByteLeapError as exc:
            self._error("inventory", exc)
            return
        held = {lease.worker_pubkey for lease in self.leases.values()}
        for worker in inventory.workers:
            if worker.worker_pubkey in held or not worker.gpus:
                continue
            gpus = sorted(gpu.uuid for gpu in worker.gpus)
            lease_id = f"collusion-{secrets.token_hex(8)}"
            start = LeaseStart(
                lease_id=lease_id, gpu_uuids=gpus, ends_at=int(self.clock()) + LEASE_S
            )
            try:
                answer = await client.forward(worker.worker_pubkey, start)
            except ByteLeapError as exc:
                self._error("lease_start", exc)
                continue
            if not isinstance(answer, LeaseAck) or not answer.accepted:
                self._error("lease_start", None, reason=getattr(answer, "reason", answer.type))
                continue
            lease = MintedLease(lease_id, worker.worker_pubkey, gpus, int(self.clock()))
            self.leases[lease_id] = lease
            self.ledger.write(
                "lease", lease_id=lease_id, worker_pubkey=worker.worker_pubkey, gpus=len(gpus)
            )
            log.info("colluding_lease", lease=lease_id, worker=worker.worker_pubkey[:16])
            await self._receipt(client, lease, "start", lease.started_at, lease.started_at)

    async def mint(self, client: MintClient) -> None:
        """One hourly receipt per lease for the whole seconds since its last receipt."""
        now = int(self.clock())
        for lease in list(self.leases.values()):
            if lease.seq < 0:  # the start receipt was refused: try it again
                await self._receipt(client, lease, "start", lease.started_at, lease.started_at)
            elif now > lease.last_end:
                await self._receipt(client, lease, "hourly", lease.last_end, now)

    def receipt(self, lease: MintedLease, kind: ReceiptKind, start: int, end: int) -> Receipt:
        """The next receipt of ``lease``, issued now."""
        assert self.miner_hotkey is not None
        return Receipt(
            netuid=self.netuid,
            lease_id=lease.lease_id,
            seq=lease.seq + 1,
            kind=kind,
            validator_hotkey=self.hotkey,
            miner_hotkey=self.miner_hotkey,
            worker_pubkey=lease.worker_pubkey,
            gpu_uuids=lease.gpu_uuids,
            gpus=len(lease.gpu_uuids),
            price_per_gpu_hour_micros=self.price_micros,
            period_start=start,
            period_end=end,
            issued_at=max(end, int(self.clock())),
        )

    async def _receipt(
        self, client: MintClient, lease: MintedLease, kind: ReceiptKind, start: int, end: int
    ) -> None:
        receipt = self.receipt(lease, kind, start, end)
        try:
            answer = await client.submit_receipt(receipt)
        except ByteLeapError as exc:
            self._error("receipt", exc, lease_id=lease.lease_id)
            return
        lease.seq, lease.last_end = receipt.seq, receipt.period_end
        self.ledger.write(
            "receipt",
            lease_id=lease.lease_id,
            seq=receipt.seq,
            kind=kind,
            seconds=receipt.seconds,
            gpus=receipt.gpus,
            cursor=answer.cursor,
        )

    def _error(self, step: str, exc: ByteLeapError | None, **fields: Any) -> None:
        message = exc.message if exc is not None else str(fields.pop("reason", ""))
        self.ledger.write("error", step=step, error=message[:300], **fields)
        log.info("colluder_refused", step=step, error=message[:300])


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop``; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


def endpoint_url(endpoint: str) -> str:
    """``HOST:PORT`` as the validator's store spells a miner's endpoint."""
    return endpoint if endpoint.startswith("http") else f"http://{endpoint}"


async def miner_at(store: Any, endpoint: str) -> str | None:
    """The hotkey of the registered miner that serves ``endpoint``, once the store has it."""
    url = endpoint_url(endpoint)
    rows: Sequence[Any] = await store.miners()
    return next((row.hotkey for row in rows if row.endpoint == url), None)


# --------------------------------------------------------------------------- the command

app = typer.Typer(
    name="devnet-colluder",
    help="A validator that mints receipts for one miner, for byteleap devnet only.",
    add_completion=False,
    no_args_is_help=True,
)


@app.callback()
def _root() -> None:
    """A validator that mints receipts for one miner, for byteleap devnet only."""


@app.command()
def run(
    miner_endpoint: Annotated[
        str, typer.Option(help="HOST:PORT of the miner to collude with (as served on chain)")
    ],
    ledger: Annotated[Path, typer.Option(help="append one JSON line per lease and receipt")],
    config: ConfigOption = None,
    start_file: Annotated[
        Path | None, typer.Option(help="start leasing once this file exists (default: at once)")
    ] = None,
) -> None:
    """Run the validator, and lease the miner's workers to nobody and mint their receipts."""
    import bittensor as bt

    from daemonkit.logs import configure_logging
    from neurons.chain import open_chain
    from neurons.validator.daemon import DRAIN_S, ValidatorDaemon
    from neurons.validator.store import open_store

    cfg = load_or_exit(ValidatorConfig, config)
    configure_logging(cfg.logging.level, cfg.logging.format)
    wallet = bt.Wallet(name=cfg.wallet.name, hotkey=cfg.wallet.hotkey, path=str(cfg.wallet.path))
    hotkey = str(wallet.hotkey.ss58_address)

    async def main(stop: asyncio.Event) -> None:
        store = await open_store(
            cfg.database.resolve_url(),
            pool_size=cfg.database.pool_size,
            auto_upgrade=cfg.database.auto_upgrade,
        )
        store.receipts.min_validator_stake = cfg.leases.min_receipt_validator_stake
        try:
            chain = await open_chain(wallet, network=cfg.chain.network, netuid=cfg.chain.netuid)
            daemon = ValidatorDaemon(cfg, signer=wallet, hotkey=hotkey, store=store, chain=chain)
            try:
                await daemon.start()
            except BaseException:
                await daemon.shutdown()
                raise
            url = endpoint_url(miner_endpoint)

            def connect(miner_hotkey: str) -> MintClient:
                return daemon.connect(miner_hotkey, url, cfg.miners.request_timeout_s)

            mint = ReceiptMint(
                hotkey=hotkey,
                netuid=cfg.chain.netuid,
                find_miner=lambda: miner_at(daemon.store, miner_endpoint),
                connect=connect,
                ledger=Ledger(ledger),
                price_per_gpu_hour=cfg.leases.price_for(PRICE_MODEL),
                interval_s=cfg.leases.receipt_interval_s,
                start_file=start_file,
            )
            minting = asyncio.create_task(mint.run(stop))
            try:
                await daemon.serve(stop)
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await minting
        finally:
            await store.close()

    try:
        run_daemon(main, drain_s=DRAIN_S)
    except ByteLeapError as exc:
        raise fail(exc.message, code=1) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
