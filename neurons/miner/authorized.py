"""Which worker keys may join this miner: an ``authorized_keys`` file and one-time join tokens.

The file works like SSH's ``authorized_keys``: one 64-hex-digit ed25519 public key per line,
``#`` starts a comment line, and anything after the key on its line is a comment::

    # gpu-host-1, rack 4
    3f1c…e9 gpu-host-1
    a0b2…17 pinned by join token 2025-01-01T12:00:00Z

Keys from the config (``workers.authorized_keys``) are allowed too. The file is re-read when it
changes on disk, so ``byteleap-miner authorize PUBKEY`` takes effect on a running miner.

A join token (``workers.join_tokens``, a secret) is good for exactly one key: the first worker to
present it has its key appended to the file, and the token is *burned*, i.e. its SHA-256 is
appended to ``<keys_file>.used-tokens``. Only hashes are stored, so the file leaks no token; the
burn is written *before* the key is pinned, so a crash between the two can lock a worker out (the
operator re-authorizes it) but never makes a token reusable. Tokens are compared in constant time.

Writes are atomic (a temporary file renamed over the old one, under an exclusive ``flock`` on a
side file), so the CLI and the daemon can add keys at the same time without losing one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import structlog

from byteleap.config.miner import WorkerServerSection
from byteleap.errors import ConfigError, Forbidden

log = structlog.get_logger("byteleap.miner.authorized")

USED_TOKENS_SUFFIX = ".used-tokens"
KEY_HEX_DIGITS = 64


def parse_pubkey(text: str) -> bytes:
    """A worker public key from 64 hex digits (either case); raises ``ValueError`` otherwise."""
    text = text.strip().lower()
    if len(text) != KEY_HEX_DIGITS or any(ch not in "0123456789abcdef" for ch in text):
        raise ValueError("a worker public key is 64 hexadecimal digits")
    return bytes.fromhex(text)


def parse_keys_text(text: str, *, source: str = "authorized keys") -> set[bytes]:
    """The keys in an authorized-keys text; ``ConfigError`` names the first bad line."""
    keys: set[bytes] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        first = stripped.split(maxsplit=1)[0]
        try:
            keys.add(parse_pubkey(first))
        except ValueError as exc:
            raise ConfigError(f"line {number}: {exc}", source=source) from None
    return keys


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock shared by every writer of ``path`` (a ``.lock`` side file)."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def append_line(path: Path, line: str) -> None:
    """Append ``line`` to ``path`` atomically: readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        try:
            old = path.read_bytes()
        except FileNotFoundError:
            old = b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(old + line.rstrip("\n").encode("utf-8") + b"\n")
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    with contextlib.suppress(OSError):  # make the rename durable; not fatal where unsupported
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class AuthorizedKeys:
    """The set of worker keys allowed to register, plus the unspent join tokens."""

    def __init__(
        self,
        keys_file: Path | None = None,
        *,
        keys: Iterable[bytes | str] = (),
        join_tokens: Iterable[str] = (),
        used_tokens_file: Path | None = None,
    ) -> None:
        self.keys_file = Path(keys_file) if keys_file is not None else None
        if used_tokens_file is None and self.keys_file is not None:
            used_tokens_file = self.keys_file.with_name(self.keys_file.name + USED_TOKENS_SUFFIX)
        self.used_tokens_file = used_tokens_file
        self._static = {k if isinstance(k, bytes) else parse_pubkey(k) for k in keys}
        self._tokens = [t for t in join_tokens if t]
        self._file_keys: set[bytes] = set()
        self._file_stamp: tuple[int, int, int] | None = None
        self._burned: set[str] = set()
        self._load_file(strict=True)
        self._load_burned()

    @classmethod
    def from_config(
        cls, section: WorkerServerSection, env: Mapping[str, str] | None = None
    ) -> AuthorizedKeys:
        """Build from the miner's ``workers`` section; resolves the ``join_tokens`` secret."""
        tokens = section.join_tokens.resolve_lines(env) if section.join_tokens else []
        return cls(section.authorized_keys_file, keys=section.authorized_keys, join_tokens=tokens)

    # ------------------------------------------------------------------ reading

    def _stamp(self) -> tuple[int, int, int] | None:
        if self.keys_file is None:
            return None
        try:
            st = self.keys_file.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load_file(self, *, strict: bool) -> None:
        stamp = self._stamp()
        if stamp == self._file_stamp:
            return
        if stamp is None or self.keys_file is None:
            self._file_keys, self._file_stamp = set(), None
            return
        try:
            keys = parse_keys_text(
                self.keys_file.read_text(encoding="utf-8"), source=str(self.keys_file)
            )
        except (ConfigError, OSError, UnicodeDecodeError) as exc:
            if strict:
                if isinstance(exc, ConfigError):
                    raise
                raise ConfigError(f"cannot be read: {exc}", source=str(self.keys_file)) from None
            # a running miner keeps the keys it had rather than locking everyone out
            log.error("authorized_keys_unreadable", file=str(self.keys_file), error=str(exc))
            return
        self._file_keys, self._file_stamp = keys, stamp

    def _load_burned(self) -> None:
        if self.used_tokens_file is None:
            return
        try:
            text = self.used_tokens_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        self._burned = {line.strip() for line in text.splitlines() if line.strip()}

    def reload(self) -> None:
        """Re-read the keys file if it changed (a bad file is logged, the old keys kept)."""
        self._load_file(strict=False)

    def keys(self) -> set[bytes]:
        self.reload()
        return self._static | self._file_keys

    def __contains__(self, pubkey: object) -> bool:
        if not isinstance(pubkey, bytes | bytearray):
            return False
        self.reload()
        key = bytes(pubkey)
        return key in self._static or key in self._file_keys

    def __len__(self) -> int:
        return len(self.keys())

    def unspent_tokens(self) -> int:
        return sum(1 for token in self._tokens if token_hash(token) not in self._burned)

    # ------------------------------------------------------------------ writing

    def add(self, pubkey: bytes | str, comment: str = "") -> bool:
        """Authorize ``pubkey`` (append it to the keys file); False if it already was."""
        key = parse_pubkey(pubkey) if isinstance(pubkey, str) else bytes(pubkey)
        if len(key) != 32:
            raise ValueError("a worker public key is 32 bytes")
        if key in self:
            return False
        comment = " ".join(comment.split())  # one line, whatever the caller passed
        if self.keys_file is not None:
            append_line(self.keys_file, f"{key.hex()} {comment}".rstrip())
            self._file_stamp = None  # re-read on next use, picking up other writers too
            self._load_file(strict=False)
        self._file_keys.add(key)
        return True

    def _match_token(self, presented: str) -> str | None:
        """The configured token equal to ``presented``, compared in constant time per token."""
        candidate = presented.encode("utf-8")
        found = None
        for token in self._tokens:  # no early exit: timing says nothing about which matched
            if hmac.compare_digest(token.encode("utf-8"), candidate):
                found = token
        return found

    def admit(
        self, pubkey: bytes, join_token: str | None = None, *, now: float | None = None
    ) -> str:
        """Decide whether ``pubkey`` may register; returns ``"key"`` or ``"token"``.

        An authorized key is admitted whatever token it also carries (the token stays unspent).
        Otherwise a valid, unspent token pins the key and is burned. Raises ``Forbidden``.
        """
        if pubkey in self:
            return "key"
        if join_token is None:
            raise Forbidden("this worker key is not authorized on this miner")
        token = self._match_token(join_token)
        if token is None:
            raise Forbidden("unknown join token")
        digest = token_hash(token)
        self._load_burned()  # another process may have spent it
        if digest in self._burned:
            raise Forbidden("this join token was already used")
        self._burned.add(digest)
        if self.used_tokens_file is not None:
            append_line(self.used_tokens_file, digest)
        when = (
            dt.datetime.fromtimestamp(now, dt.UTC) if now is not None else dt.datetime.now(dt.UTC)
        )
        self.add(pubkey, comment=f"pinned by join token {when:%Y-%m-%dT%H:%M:%SZ}")
        log.info("worker_key_pinned", worker=bytes(pubkey).hex())
        return "token"


__all__ = [
    "USED_TOKENS_SUFFIX",
    "AuthorizedKeys",
    "append_line",
    "parse_keys_text",
    "parse_pubkey",
    "token_hash",
]
