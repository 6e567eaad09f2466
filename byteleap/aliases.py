"""Type aliases several parts of the system share, defined once here so that each name means
one thing everywhere.

* :data:`WorkerRef`: which worker, as ``(miner hotkey, worker public key hex)``; the validator
  keys its scores, rounds and leases by it. (A worker's signing key is
  :class:`byteleap.crypto.WorkerKey`.)
* :data:`Clock`: a monotonic or wall clock passed in, in seconds (the core reads no clock).
"""

from __future__ import annotations

from collections.abc import Callable

#: ``(miner hotkey, worker public key hex)``
WorkerRef = tuple[str, str]
#: seconds, from whatever clock the caller passes in
Clock = Callable[[], float]

__all__ = ["Clock", "WorkerRef"]
