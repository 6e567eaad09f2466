"""The epoch benchmark's world: its settings, the miners and workers filled into the scratch
database, the stub miners' HTTP server in its own process and the validator's wallet."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import bittensor as bt
from bittensor.sp_core import Keypair

from bench.stub_process import StubProcess
from byteleap.challenge.params import ChallengeParams
from byteleap.config.challenge import ChallengeSection
from neurons.validator.store.records import GpuSnapshot, WorkerRow

GPU_NAME = "NVIDIA H100 80GB HBM3"


GPU_MEMORY_MIB = 81559


GPU_CAPABILITY = "9.0"


#: the challenge id of the sampled reveals (the stub answers every ``/reveal`` with one body)
REVEAL_ID = "bench-reveal"


#: bytes per read of a commit record, as a socket hands them over
CHUNK = 64 * 1024


NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


# The miners: one asyncio HTTP/1.1 server in its own process, for every miner hotkey. It parses
# only what it must (the request line, the headers, the EpochRequest's JSON header for the
# challenge ids) so that its own work does not delay the timestamps. Commands on stdin:
# "report" prints what it saw as one JSON line and forgets it; anything else stops it.
STUB_SCRIPT = r"""
import asyncio, json, resource, struct, sys, time
from byteleap.protocol.stream import encode_record
from byteleap.protocol.miner_api.challenges import EpochFailure

REVEAL_PATH, ANSWER_AFTER = sys.argv[1], float(sys.argv[2])
PLACEHOLDER = "c" * 32  # Challenger ids are 16 random bytes in hex
MESSAGE = "worker is busy"

def failure(cid):
    return encode_record(EpochFailure(challenge_id=cid, code="unavailable", message=MESSAGE))

TEMPLATE = failure(PLACEHOLDER)
seen = []
reveal = []

def record(cid):
    if len(cid) == len(PLACEHOLDER):  # the same bytes encode_record makes, without pydantic
        return TEMPLATE.replace(PLACEHOLDER.encode(), cid.encode(), 1)
    return failure(cid)

async def answer_epoch(writer, entry, body):
    (size,) = struct.unpack_from("<I", body, 4)
    ids = [c["challenge_id"] for c in json.loads(body[8 : 8 + size])["challenges"]]
    entry["challenges"] = len(ids)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-byteleap-records\r\n"
                 b"transfer-encoding: chunked\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(max(0.0, entry["at"] + ANSWER_AFTER - time.monotonic()))
    out = bytearray()
    for cid in ids:
        one = record(cid)
        out += b"%x\r\n" % len(one) + one + b"\r\n"
    out += b"0\r\n\r\n"
    writer.write(bytes(out))
    await writer.drain()
    entry["answered"] = time.monotonic()

async def handle(reader, writer):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            headed = time.monotonic()
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            entry = {"path": path, "receiver": headers.get("x-bittensor-receiver"),
                     "headers_at": headed, "at": time.monotonic(), "bytes": len(body)}
            seen.append(entry)
            if path == "/epoch":
                await answer_epoch(writer, entry, body)
            elif path == "/reveal":
                if not reveal:
                    reveal.append(open(REVEAL_PATH, "rb").read())
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-byteleap-frame\r\n"
                             b"content-length: %d\r\n\r\n" % len(reveal[0]))
                writer.write(reveal[0])
                await writer.drain()
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    while (await asyncio.to_thread(sys.stdin.readline)).strip() == "report":
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"requests": seen, "cpu_s": usage.ru_utime + usage.ru_stime}),
              flush=True)
        seen.clear()
    server.close()

asyncio.run(main())
"""


@dataclass(frozen=True)
class EpochSettings:
    """What to measure, and how much."""

    miners: int = 256
    workers_per_miner: int = 100
    gpus_per_worker: int = 8
    #: libpq URL of a server where a scratch database may be created; None: no database
    database_url: str | None = None
    commit_sample: int = 200
    store_sample: int = 1000
    reveal_sample: int = 12
    verify_repeats: int = 9
    #: seconds from a request's arrival to its answer; None: the challenge's expected time
    answer_after_s: float | None = None
    #: challenge parameters for the unit costs; None: what the planner sized (tests shrink it)
    unit_params: ChallengeParams | None = None
    section: ChallengeSection = field(default_factory=ChallengeSection)

    @property
    def workers(self) -> int:
        return self.miners * self.workers_per_miner

    @property
    def gpus(self) -> int:
        return self.workers * self.gpus_per_worker


def quick_settings(database_url: str | None) -> EpochSettings:
    return EpochSettings(
        miners=16,
        workers_per_miner=20,
        database_url=database_url,
        commit_sample=20,
        store_sample=100,
        reveal_sample=3,
        verify_repeats=3,
    )


@dataclass(frozen=True)
class EpochMiner:
    uid: int
    keypair: Keypair

    @property
    def hotkey(self) -> str:
        return str(self.keypair.ss58_address)


def make_miners(count: int) -> list[EpochMiner]:
    return [
        EpochMiner(i, Keypair.create_from_seed(hashlib.sha256(b"bench-miner-%d" % i).digest()))
        for i in range(count)
    ]


def worker_pubkey(index: int) -> str:
    return hashlib.sha256(b"bench-worker-%d" % index).hexdigest()


def gpu_uuid(worker: int, gpu: int) -> str:
    return f"GPU-{worker:08x}-bench-{gpu}"


def network(
    settings: EpochSettings, miners: Sequence[EpochMiner], endpoint: str
) -> list[WorkerRow]:
    """Every worker, as ``SqlStore.workers`` returns them (for the runs without a database)."""
    out = []
    for miner in miners:
        for w in range(settings.workers_per_miner):
            index = miner.uid * settings.workers_per_miner + w
            gpus = tuple(
                GpuSnapshot(gpu_uuid(index, g), GPU_NAME, GPU_MEMORY_MIB, GPU_CAPABILITY)
                for g in range(settings.gpus_per_worker)
            )
            out.append(
                WorkerRow(miner.hotkey, miner.uid, endpoint, worker_pubkey(index), "idle", True,
                          NOW, gpus)
            )  # fmt: skip
    return out


async def fill(
    dsn: str, settings: EpochSettings, miners: Sequence[EpochMiner], endpoint: str
) -> None:
    """The miners, workers and GPUs, copied straight into the tables (not an ingest rate)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "miners",
            records=[(m.hotkey, m.uid, f"cold{m.uid}", 100.0, False, endpoint, True, NOW, NOW)
                     for m in miners],
            columns=["hotkey", "uid", "coldkey", "stake", "validator_permit", "endpoint",
                     "registered", "first_synced", "last_synced"],
        )  # fmt: skip
        workers, gpus = [], []
        for miner in miners:
            for w in range(settings.workers_per_miner):
                index = miner.uid * settings.workers_per_miner + w
                pubkey = worker_pubkey(index)
                workers.append((miner.hotkey, pubkey, "idle", True, NOW, NOW))
                gpus += [
                    (gpu_uuid(index, g), miner.hotkey, pubkey, GPU_NAME, GPU_MEMORY_MIB,
                     GPU_CAPABILITY, NOW, NOW, True)
                    for g in range(settings.gpus_per_worker)
                ]  # fmt: skip
        await conn.copy_records_to_table(
            "workers", records=workers,
            columns=["miner_hotkey", "worker_pubkey", "state", "online", "first_seen",
                     "last_seen"],
        )  # fmt: skip
        await conn.copy_records_to_table(
            "gpus", records=gpus,
            columns=["gpu_uuid", "miner_hotkey", "worker_pubkey", "model", "memory_mib",
                     "compute_capability", "first_seen", "last_seen", "present"],
        )  # fmt: skip
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


class EpochStub(StubProcess):
    """The miners' stub server (``STUB_SCRIPT``) in its own process."""

    @classmethod
    async def start(cls, reveal_path: Path, answer_after_s: float) -> EpochStub:
        process, first = await cls.spawn(
            STUB_SCRIPT, str(reveal_path), repr(answer_after_s), limit=1 << 26
        )
        return cls(process, int(first["port"]))

    async def report(self) -> dict[str, Any]:
        return await self.ask_report()


def make_wallet(root: Path) -> bt.Wallet:
    """A real bittensor wallet, created offline, unencrypted."""
    wallet = bt.Wallet("bench-validator", "default", path=str(root))
    wallet.create_new_coldkey(use_password=False, suppress=True)
    wallet.create_new_hotkey(use_password=False, suppress=True)
    return wallet
