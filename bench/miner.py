"""One miner worker hub holding N simulated workers, measured side by side in one run.

    python bench/miner.py              # N = 1000
    python bench/miner.py --workers 200
    python bench/miner.py --quick          # N = 100, a smoke run
    python bench/miner.py --json out.json  # also write the figures as JSON

The hub runs in its own process (so its RSS is its own). This process opens N light protocol
clients. Each does the real handshake (ed25519 over the hub's nonce), heartbeats every second and
answers challenges with a pre-signed commit. It reports:

* connect time for all N (handshake included);
* heartbeat round trip (heartbeat sent -> ack received) p50/p99 under that load;
* the hub's RSS with N workers connected, against its RSS when idle;
* fan-out: one challenge dispatched to all N at once, until all N commits are back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

from byteleap.crypto import WorkerKey
from byteleap.protocol import codec
from byteleap.protocol.handshake import make_register
from byteleap.protocol.inventory import GpuInfo, HostInfo, Inventory
from byteleap.protocol.worker_link.challenges import ChallengeCommit, ChallengeDispatch, GpuCommit
from byteleap.protocol.worker_link.session import Heartbeat, HeartbeatAck, Hello, Welcome

HUB_SCRIPT = r"""
import asyncio, json, os, sys, time, psutil
from pathlib import Path
from byteleap.challenge.params import CPU_DEFAULT
from byteleap.config import MinerConfig
from byteleap.protocol.worker_link.challenges import ChallengeDispatch
from neurons.miner.authorized import AuthorizedKeys
from neurons.miner.hub import WorkerHub
from daemonkit.logs import configure_logging

configure_logging("WARNING")  # logs go to stderr; stdout carries the measurements

async def main():
    keys = [line.strip() for line in sys.stdin.readline().split(",") if line.strip()]
    cfg = MinerConfig.model_validate({"workers": {"host": "127.0.0.1", "port": 0,
        "max_workers": len(keys) + 10, "messages_per_second": 50, "heartbeat_timeout_s": 30},
        "paths": {"data_dir": sys.argv[1]}})
    hub = WorkerHub(cfg.workers, AuthorizedKeys(None, keys=keys), "5BenchMinerHotkey")
    await hub.start()
    proc = psutil.Process()
    print(json.dumps({"port": hub.port, "idle_rss": proc.memory_info().rss}), flush=True)
    while hub.connected() < len(keys):
        await asyncio.sleep(0.1)
    await asyncio.sleep(3)  # heartbeats flowing
    rss = proc.memory_info().rss
    summaries = hub.summaries()
    started = time.perf_counter()
    async def one(i, summary):
        dispatch = ChallengeDispatch(challenge_id=f"fan-{i}", seed=bytes(32), params=CPU_DEFAULT,
            gpu_uuids=[summary.gpus[0].uuid], deadline_ms=60000)
        return await hub.challenge(summary.worker_pubkey_bytes, dispatch, timeout=60)
    results = await asyncio.gather(*(one(i, s) for i, s in enumerate(summaries)),
                                   return_exceptions=True)
    fanout = time.perf_counter() - started
    ok = sum(1 for r in results if not isinstance(r, BaseException))
    print(json.dumps({"rss": rss, "fanout_s": fanout, "commits": ok,
                      "listed": len(summaries)}), flush=True)
    sys.stdin.readline()
    await hub.stop()

asyncio.run(main())
"""


def inventory(uuid: str) -> Inventory:
    host = HostInfo(hostname="sim", cpu_count_logical=1, memory_total_bytes=1 << 30,
                    memory_available_bytes=1 << 29)  # fmt: skip
    gpu = GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", uuid=uuid, memory_total_mib=81559)
    return Inventory(host=host, gpus=[gpu], backends=["cupy"])


async def simulated_worker(
    key: WorkerKey, url: str, connected: asyncio.Event, rtts: list[float], stop: asyncio.Event
) -> None:
    uuid = f"GPU-sim-{key.public_key.hex()[:24]}"
    async with connect(url, max_size=1 << 24, open_timeout=120, compression=None) as ws:
        hello = codec.decode(await ws.recv(), codec.MINER_TO_WORKER, max_bytes=1 << 20)
        assert isinstance(hello, Hello)
        register = make_register(key, hello, agent_version="bench", inventory=inventory(uuid))
        await ws.send(codec.encode(register))
        welcome = codec.decode(await ws.recv(), codec.MINER_TO_WORKER, max_bytes=1 << 20)
        assert isinstance(welcome, Welcome)
        connected.set()
        sent_at: dict[int, float] = {}
        seq = 0

        async def beat() -> None:
            nonlocal seq
            while not stop.is_set():
                sent_at[seq] = time.perf_counter()
                await ws.send(codec.encode(Heartbeat(seq=seq, state="idle")))
                seq += 1
                await asyncio.sleep(1.0)

        beats = asyncio.create_task(beat())
        try:
            async for frame in ws:
                message = codec.decode(frame, codec.MINER_TO_WORKER, max_bytes=1 << 24)
                if isinstance(message, HeartbeatAck) and message.seq in sent_at:
                    rtts.append(time.perf_counter() - sent_at.pop(message.seq))
                elif isinstance(message, ChallengeDispatch):
                    roots = [bytes(32)] * message.params.stages
                    commit = GpuCommit.create(key, message.challenge_id, uuid, roots)
                    reply = ChallengeCommit(challenge_id=message.challenge_id, gpus=[commit])
                    await ws.send(codec.encode(reply))
                if stop.is_set():
                    break
        finally:
            beats.cancel()


async def run(n: int, tmp: str) -> dict[str, float]:
    keys = [WorkerKey.generate() for _ in range(n)]
    hub = subprocess.Popen(  # noqa: ASYNC220 (starts once, before any measurement)
        [sys.executable, "-c", HUB_SCRIPT, tmp],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert hub.stdin and hub.stdout
    hub.stdin.write(",".join(k.public_key.hex() for k in keys) + "\n")
    hub.stdin.flush()
    first = json.loads(await asyncio.to_thread(hub.stdout.readline))
    url = f"ws://127.0.0.1:{first['port']}/worker"
    rtts: list[float] = []
    stop = asyncio.Event()
    events = [asyncio.Event() for _ in range(n)]
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(simulated_worker(k, url, e, rtts, stop))
        for k, e in zip(keys, events, strict=True)
    ]
    await asyncio.gather(*(e.wait() for e in events))
    connect_s = time.perf_counter() - started
    second = json.loads(await asyncio.to_thread(hub.stdout.readline))
    steady = sorted(rtts[len(rtts) // 4 :]) or [0.0]
    stop.set()
    hub.stdin.write("done\n")
    hub.stdin.flush()
    await asyncio.to_thread(hub.wait, 30)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "workers": n,
        "connect_all_s": connect_s,
        "heartbeat_rtt_p50_ms": statistics.median(steady) * 1e3,
        "heartbeat_rtt_p99_ms": steady[min(len(steady) - 1, int(len(steady) * 0.99))] * 1e3,
        "heartbeats_measured": len(steady),
        "hub_rss_idle_mb": first["idle_rss"] / 2**20,
        "hub_rss_loaded_mb": second["rss"] / 2**20,
        "fanout_s": second["fanout_s"],
        "fanout_commits": second["commits"],
        "listed": second["listed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="N = 100 unless --workers is given")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    if args.quick and args.workers == parser.get_default("workers"):
        args.workers = 100
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args.workers, tmp))
    print(f"machine: {os.cpu_count()} cores; hub and clients share it")
    for key, value in result.items():
        print(f"  {key:<24} {value:10.2f}" if isinstance(value, float) else f"  {key:<24} {value}")
    ratio = result["hub_rss_loaded_mb"] / result["hub_rss_idle_mb"]
    print(f"  {'RSS ratio loaded/idle':<24} {ratio:10.2f}")
    if args.json:
        figures = {**result, "rss_ratio": ratio, "cpu_count": os.cpu_count()}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
