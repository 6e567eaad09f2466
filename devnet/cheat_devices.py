"""The devices a cheating worker claims: their derived UUIDs, the inventory that lists them, an
agent that reports every one busy, and one real device shared by several claims
(:class:`SharedDevice`)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from byteleap.protocol.inventory import GpuInfo, Inventory
from byteleap.protocol.worker_link.challenges import ChallengeDispatch
from byteleap.protocol.worker_link.session import Unavailable, WorkerState
from byteleap.sessions.agent_events import AgentInstruction, Send
from byteleap.sessions.worker_agent import WorkerAgent
from devnet.cheat_modes import (
    AMBIGUOUS_MEMORY_MIB,
    AMBIGUOUS_MODEL,
    CAPABILITIES,
    COMPANION_DEVICE_MIB,
    CPU_AS_GPU_MEMORY_MIB,
    CPU_AS_GPU_MODEL,
    LOCK_POLL_S,
    PHANTOM_MEMORY_MIB,
    PHANTOM_MODEL,
    SYBIL_DEVICE_MIB,
    CheatMode,
)
from workers.backends.base import Abandoned, Device
from workers.backends.select import CPU_DEVICE_INDEX


def _derived(worker_pubkey: bytes, purpose: bytes) -> bytes:
    return hashlib.sha256(b"byteleap/devnet/" + purpose + b"/" + worker_pubkey).digest()


def twin_uuid(worker_pubkey: bytes) -> str:
    """The second CPU device a copied_roots worker claims (unique per worker)."""
    return "CPU-" + _derived(worker_pubkey, b"twin").hex()[:32]


def phantom_uuid(worker_pubkey: bytes) -> str:
    """An NVML-looking UUID for the GPU a phantom worker claims."""
    return f"GPU-{uuidlib.UUID(bytes=_derived(worker_pubkey, b'phantom')[:16])}"


def fake_gpu_uuid(worker_pubkey: bytes, mode: CheatMode) -> str:
    """An NVML-looking UUID for the GPU a cpu_as_gpu or ambiguous_model worker claims."""
    purpose = b"gpu/" + mode.value.encode()
    return f"GPU-{uuidlib.UUID(bytes=_derived(worker_pubkey, purpose)[:16])}"


def sybil_uuid(worker_pubkey: bytes, claim: int) -> str:
    """The CPU device a sybil worker claims as its ``claim``-th (from 1; claim 0 is its own)."""
    return "CPU-" + _derived(worker_pubkey, b"sybil/%d" % claim).hex()[:32]


def phantom_busy_uuid(worker_pubkey: bytes, claim: int) -> str:
    """The ``claim``-th CPU device a phantom_busy worker lists (from 1; claim 0 is its own)."""
    return "CPU-" + _derived(worker_pubkey, b"busy/%d" % claim).hex()[:32]


def _gpu(uuid: str, name: str, memory_mib: int) -> Device:
    return Device(uuid=uuid, name=name, kind="cuda", index=0, memory_total_bytes=memory_mib * 2**20)


def claimed_devices(
    mode: CheatMode, real: Device, worker_pubkey: bytes, *, claims: int = 1, companion: bool = False
) -> list[Device]:
    """The devices the worker advertises: its real CPU device, a twin, several sybil or
    phantom_busy claims, or a GPU it does not have."""
    if mode is CheatMode.COPIED_ROOTS:
        twin = Device(uuid=twin_uuid(worker_pubkey), name=real.name, kind="cpu")
        return [real, twin]
    if mode is CheatMode.PHANTOM_GPU:
        return [_gpu(phantom_uuid(worker_pubkey), PHANTOM_MODEL, PHANTOM_MEMORY_MIB)]
    if mode is CheatMode.CPU_AS_GPU:
        return [_gpu(fake_gpu_uuid(worker_pubkey, mode), CPU_AS_GPU_MODEL, CPU_AS_GPU_MEMORY_MIB)]
    if mode is CheatMode.AMBIGUOUS_MODEL:
        return [_gpu(fake_gpu_uuid(worker_pubkey, mode), AMBIGUOUS_MODEL, AMBIGUOUS_MEMORY_MIB)]
    if mode is CheatMode.SYBIL:
        shared = replace(real, memory_total_bytes=SYBIL_DEVICE_MIB * 2**20)
        extra = [replace(shared, uuid=sybil_uuid(worker_pubkey, i)) for i in range(1, claims)]
        return [shared, *extra]
    if mode is CheatMode.PHANTOM_BUSY and companion:
        return [replace(real, memory_total_bytes=COMPANION_DEVICE_MIB * 2**20)]
    if mode is CheatMode.PHANTOM_BUSY:
        listed = [replace(real, uuid=phantom_busy_uuid(worker_pubkey, i)) for i in range(1, claims)]
        return [real, *listed]
    return [real]


def claimed_inventory(inventory: Inventory, devices: Sequence[Device]) -> Inventory:
    """``inventory`` (the host's real facts) listing exactly ``devices`` as its GPUs."""
    host_mib = inventory.host.memory_total_bytes // 2**20

    def index(i: int, device: Device) -> int:
        # a CPU device has no NVML index; take the top of the range, as the honest worker does
        return device.index if device.index is not None else CPU_DEVICE_INDEX - i

    gpus = [
        GpuInfo(
            index=index(i, device),
            name=device.name[:64],
            uuid=device.uuid,
            memory_total_mib=(device.memory_total_bytes or 0) // 2**20 or host_mib,
            compute_capability=CAPABILITIES.get(device.name),
        )
        for i, device in enumerate(devices)
    ]
    backends = ["cupy"] if any(d.kind == "cuda" for d in devices) else ["numpy"]
    return inventory.model_copy(update={"gpus": gpus, "backends": backends})


class AlwaysBusyAgent(WorkerAgent):
    """The real worker agent, except that it says "busy" in every heartbeat and refuses every
    challenge as busy at once, without computing (phantom_busy). It still takes a lease, and
    then says "leased", as the honest agent does."""

    @property
    def state(self) -> WorkerState:
        return "leased" if self.lease is not None else "busy"

    def _dispatch(self, dispatch: ChallengeDispatch) -> list[AgentInstruction]:
        busy = Unavailable(challenge_id=dispatch.challenge_id, leased=self.lease is not None)
        return [Send(busy)]


class SharedDevice:
    """The one simulated device behind every claim of a sybil: a file lock (``fcntl.flock``)
    held for the whole paced run of one claim, so claims in any process or thread are served one
    after another.

    Each hold opens the file anew (its own open file description), so two holders in one process
    exclude each other as two processes do. While it holds the lock, a holder appends one JSON
    line to the same file: the claim, the challenge, and when the device began and ended serving
    it (wall clock), so a test can tell which claim was served first."""

    def __init__(self, path: Path, *, poll_s: float = LOCK_POLL_S) -> None:
        self.path = path
        self.poll_s = poll_s

    @contextlib.contextmanager
    def serving(
        self, claim: str, challenge_id: str, should_stop: Callable[[], bool] | None = None
    ) -> Iterator[None]:
        """Hold the device while the body runs; raises Abandoned if stopped while waiting."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if should_stop is not None and should_stop():
                        raise Abandoned("stopped while waiting for the shared device") from None
                    time.sleep(self.poll_s)
            try:
                began = time.time()
                yield
                entry = {
                    "claim": claim,
                    "challenge_id": challenge_id,
                    "pid": os.getpid(),
                    "began": began,
                    "ended": time.time(),
                }
                handle.write(json.dumps(entry) + "\n")
                handle.flush()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ledger(self) -> list[dict[str, Any]]:
        """Every run the device served, in the order it served them."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
