"""Who may call the miner's validator API (SPEC 2).

Two steps, two typed failures:

1. **Authentication** (``btauth/1``, ``bittensor.http_auth.verify``): the request is signed by the
   hotkey it names, for *this* miner's hotkey (receiver-bound), inside the freshness window, over
   exactly the bytes received, and its nonce was never accepted before. Any failure is
   :class:`byteleap.errors.Unauthenticated` (HTTP 401).
2. **Authorization**: the hotkey is on the operator's allow-list, or the current metagraph shows
   it with a validator permit and at least ``min_stake``. Otherwise
   :class:`byteleap.errors.Forbidden` (HTTP 403), with a message naming the condition that failed.

Messages never contain the signature (bittensor's own messages do not either), so they may be
returned to the unauthenticated caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from bittensor import http_auth

from byteleap.chain import MetagraphView
from byteleap.errors import Forbidden, Unauthenticated

#: the btauth/1 headers; a request without any of the required ones is refused before its body is
#: read, so unauthenticated peers cannot make the miner buffer large bodies
REQUIRED_HEADERS = (
    http_auth.HEADER_VERSION,
    http_auth.HEADER_HOTKEY,
    http_auth.HEADER_NONCE,
    http_auth.HEADER_SIGNATURE,
    http_auth.HEADER_RECEIVER,
)


class ValidatorGate:
    """Authenticates ``btauth/1`` requests to ``miner_hotkey`` and authorizes the caller.

    ``metagraph_source`` returns the latest metagraph (``None`` until the first sync); it is
    called on every request, so the gate follows permit and stake changes without a restart.
    One gate holds one nonce store: share the gate (or the store) between every route so that a
    request accepted on one path cannot be replayed on another.
    """

    def __init__(
        self,
        miner_hotkey: str,
        *,
        metagraph_source: Callable[[], MetagraphView | None],
        min_stake: float,
        allowed: Iterable[str] = (),
        nonce_store: http_auth.NonceStore | None = None,
        max_age: float = http_auth.DEFAULT_MAX_AGE,
        allowed_skew: float = http_auth.DEFAULT_ALLOWED_SKEW,
        now_ns: Callable[[], int] | None = None,
    ) -> None:
        if max_age <= 0 or allowed_skew < 0:
            raise ValueError("max_age must be positive and allowed_skew non-negative")
        self.miner_hotkey = miner_hotkey
        self.min_stake = float(min_stake)
        self.allowed = frozenset(allowed)
        self.max_age = max_age
        self.allowed_skew = allowed_skew
        self._metagraph_source = metagraph_source
        self._now_ns = now_ns or time.time_ns
        if nonce_store is None:
            nonce_store = http_auth.InMemoryNonceStore(
                retention=max(60.0, 2 * (max_age + allowed_skew))
            )
        self.nonce_store = nonce_store

    # ------------------------------------------------------------------ steps

    @staticmethod
    def precheck(headers: Mapping[str, str]) -> None:
        """Cheap check before the body is read: every required btauth header is present."""
        lowered = {key.lower() for key in headers}
        missing = [name for name in REQUIRED_HEADERS if name.lower() not in lowered]
        if missing:
            raise Unauthenticated(f"unsigned request: missing {', '.join(missing)} (btauth/1)")

    def authenticate(self, headers: Mapping[str, str], body: bytes, method: str, path: str) -> str:
        """The verified caller hotkey; raises ``Unauthenticated``."""
        try:
            caller = http_auth.verify(
                headers,
                body,
                method=method,
                path=path,
                self_hotkey_ss58=self.miner_hotkey,
                max_age=self.max_age,
                allowed_skew=self.allowed_skew,
                require_receiver=True,
                nonce_store=self.nonce_store,
                now_ns=self._now_ns(),
            )
        except http_auth.AuthError as exc:
            # bittensor's messages never echo the signature or the payload
            reason = type(exc).__name__
            raise Unauthenticated(f"{reason}: {exc}") from None
        return caller.hotkey_ss58

    def authorize(self, hotkey: str) -> None:
        """Raises ``Forbidden`` unless ``hotkey`` may use the API."""
        if hotkey in self.allowed:
            return
        metagraph = self._metagraph_source()
        if metagraph is None:
            raise Forbidden(
                f"hotkey {hotkey} is not allow-listed and the metagraph is not synced yet"
            )
        neuron = metagraph.by_hotkey(hotkey)
        if neuron is None:
            raise Forbidden(
                f"unknown hotkey {hotkey}: not registered on netuid {metagraph.netuid} "
                f"at block {metagraph.block}"
            )
        if not neuron.validator_permit:
            raise Forbidden(f"hotkey {hotkey} (uid {neuron.uid}) has no validator permit")
        if not neuron.stake >= self.min_stake:
            raise Forbidden(
                f"hotkey {hotkey} (uid {neuron.uid}) has stake {neuron.stake:g}, "
                f"below the minimum {self.min_stake:g}"
            )

    def check(self, headers: Mapping[str, str], body: bytes, method: str, path: str) -> str:
        """Authenticate, then authorize; returns the caller's hotkey (ss58)."""
        self.precheck(headers)
        hotkey = self.authenticate(headers, body, method, path)
        self.authorize(hotkey)
        return hotkey


__all__ = ["REQUIRED_HEADERS", "ValidatorGate"]
