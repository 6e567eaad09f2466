"""The worker's proof of identity on connect (SPEC 2).

The miner sends a fresh 32-byte nonce and its hotkey in ``Hello``; the worker answers with its
ed25519 public key and a signature over::

    frame(b"byteleap/handshake/v1", nonce, miner_hotkey, worker_pubkey)

* The nonce makes every answer single-use: a recorded ``Register`` is worthless on the next
  connection, because the miner draws a new nonce.
* The miner hotkey binds the answer to one miner: a malicious miner cannot relay a worker's
  answer to another miner to impersonate that worker there.
* The public key is signed too, so the domain-tagged payload says exactly who proves what.

No reusable secret crosses the link. ``Register.join_token`` is one-time (the miner pins the key
and burns the token), and deciding whether the key is authorized is the miner's business, not
this module's: :func:`verify_register` only checks the proof of possession.

The caller supplies the randomness (``Hello.nonce``): the pure core draws none.
"""

from __future__ import annotations

from byteleap.crypto import WorkerKey, frame, verify_ed25519
from byteleap.protocol.inventory import Inventory
from byteleap.protocol.worker_link.session import Hello, Register

#: domain tag of the handshake signature
HANDSHAKE_TAG = b"byteleap/handshake/v1"


def handshake_payload(nonce: bytes, miner_hotkey: str, worker_pubkey: bytes) -> bytes:
    """The bytes the worker signs to answer ``Hello``."""
    return frame(HANDSHAKE_TAG, nonce, miner_hotkey, worker_pubkey)


def make_register(
    key: WorkerKey,
    hello: Hello,
    *,
    agent_version: str,
    inventory: Inventory,
    join_token: str | None = None,
) -> Register:
    """The worker's signed answer to ``hello``."""
    public = key.public_key
    return Register(
        worker_pubkey=public,
        signature=key.sign(handshake_payload(hello.nonce, hello.miner_hotkey, public)),
        agent_version=agent_version,
        join_token=join_token,
        inventory=inventory,
    )


def verify_register(hello: Hello, register: Register) -> bool:
    """True when ``register`` proves possession of ``register.worker_pubkey`` for this ``hello``.

    Pass the ``Hello`` this side sent (never one echoed by the peer). The caller still decides
    whether the key is authorized (``authorized_keys`` or a one-time join token).
    """
    payload = handshake_payload(hello.nonce, hello.miner_hotkey, register.worker_pubkey)
    return verify_ed25519(register.worker_pubkey, payload, register.signature)


__all__ = ["HANDSHAKE_TAG", "handshake_payload", "make_register", "verify_register"]
