"""TCP ports for daemons that must be told their port before they start.

A server the test runs in its own event loop binds port 0 and reports the port it got; use that
whenever the code allows it. A daemon started from a config (a child process, or a ``MinerDaemon``
whose API port is also announced on the chain) needs a number up front: :func:`free_port` gives
one.

The kernel's ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``) is avoided on purpose:
every outgoing connection of every test takes a port from it, so a port probed there and released
can be taken by a client socket before the daemon binds it. Below that range, each pytest-xdist
worker draws from a slice of its own (``gw0``, ``gw1``, ... never meet), at random inside the
slice (other test runs on the same machine rarely meet), never twice in one process, and only a
port that nothing is bound to right now.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

#: the lowest port handed out; the slices go up to the kernel's ephemeral range
FIRST_PORT = 20_000
#: ports of one xdist worker's slice (the 12,768 ports below 32,768 fit 8 workers)
SLICE = 1_596
_FALLBACK_EPHEMERAL_START = 32_768

_handed_out: set[int] = set()
_rng = random.SystemRandom()


def _ephemeral_start() -> int:
    try:
        low = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]
        return int(low)
    except (OSError, ValueError, IndexError):
        return _FALLBACK_EPHEMERAL_START


def worker_index() -> int:
    """The pytest-xdist worker number (``gw3`` is 3), 0 without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = name.removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


def port_slice() -> range:
    """The ports this process may hand out."""
    top = max(_ephemeral_start(), FIRST_PORT + SLICE)
    slices = max(1, (top - FIRST_PORT) // SLICE)
    start = FIRST_PORT + (worker_index() % slices) * SLICE
    return range(start, start + SLICE)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to, not handed out before in this process,
    from this xdist worker's slice."""
    ports = port_slice()
    candidates = [p for p in ports if p not in _handed_out]
    _rng.shuffle(candidates)
    for port in candidates:
        if _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port left in {ports.start}-{ports.stop - 1}")
