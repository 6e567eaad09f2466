"""Real bittensor wallets for tests, created offline in a temporary directory.

    from tests.wallets import make_wallet

    wallet, hotkey_ss58 = make_wallet(tmp_path, "validator")

Keys are unencrypted (no password prompt). Pass ``seed`` (32 bytes) for a reproducible hotkey;
the coldkey is then derived from the same seed, so one seed gives one stable identity.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import bittensor as bt


def make_wallet(
    root: str | Path,
    name: str = "test",
    hotkey: str = "default",
    *,
    seed: bytes | None = None,
) -> tuple[bt.Wallet, str]:
    """Create wallet ``name`` with hotkey ``hotkey`` under ``root``; return it and the hotkey ss58.

    The wallet follows bittensor's layout (``root/name/coldkey``, ``coldkeypub.txt``,
    ``hotkeys/<hotkey>``), so ``bt.Wallet(name, hotkey, path=str(root))`` opens it again. Creating
    a second hotkey in an existing wallet reuses its coldkey.
    """
    wallet = bt.Wallet(name, hotkey, path=str(root))
    if not wallet.coldkeypub_file.exists_on_device():
        if seed is None:
            wallet.create_new_coldkey(use_password=False, suppress=True)
        else:
            coldkey_seed = hashlib.sha256(b"byteleap-test-coldkey" + seed).digest()
            wallet.regenerate_coldkey(seed=coldkey_seed, use_password=False, suppress=True)
    if seed is None:
        wallet.create_new_hotkey(use_password=False, suppress=True)
    else:
        if len(seed) != 32:
            raise ValueError("seed must be 32 bytes")
        wallet.regenerate_hotkey(seed=seed, use_password=False, suppress=True)
    return wallet, str(wallet.hotkey.ss58_address)


def coldkey_of(wallet: bt.Wallet) -> str:
    """The wallet's coldkey ss58 (read from the public file, no unlocking)."""
    return str(wallet.coldkeypub.ss58_address)
