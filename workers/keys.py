"""The worker's ed25519 key file (``byteleap-worker keygen``).

The file holds the 32-byte private seed as hex on one line, mode 0600. Like ssh, we refuse a key
that other users can read: a leaked seed lets anyone impersonate this worker to its miner.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from byteleap.crypto import WorkerKey
from byteleap.errors import ConfigError


def write_key(path: Path, *, overwrite: bool = False) -> WorkerKey:
    """Generate a key and write it to ``path`` with mode 0600 (created atomically)."""
    path = path.expanduser()
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --force to replace it", key="link.key_file")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = WorkerKey.generate()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (key.seed().hex() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return key


def read_key(path: Path) -> WorkerKey:
    """Read the key; a missing, malformed or group/world-readable file is a ConfigError."""
    path = path.expanduser()
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"no worker key at {path}; create one with `byteleap-worker keygen`",
            key="link.key_file",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", key="link.key_file") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
            f"run `chmod 600 {path}`",
            key="link.key_file",
        )
    try:
        seed = bytes.fromhex(text)
        return WorkerKey.from_seed(seed)
    except ValueError:
        raise ConfigError(f"{path} does not hold a 32-byte hex seed", key="link.key_file") from None
