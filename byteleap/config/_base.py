"""Building blocks shared by every configuration model: the section base class and field types."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


class Section(BaseModel):
    """Base of every config model: unknown keys are errors, values are frozen after loading.

    A section written in YAML with all of its keys commented out parses as ``null``; that means
    "all defaults", not an error.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_section(cls, data: Any) -> Any:
        return {} if data is None else data


def fill_default(config: BaseModel, section: str, **values: Any) -> None:
    """Set keys of a frozen ``config.<section>`` whose defaults derive from other keys.

    Called from a root model's after-validator, where returning a modified copy is not supported
    (pydantic ignores it under ``__init__``). The section is replaced by a copy, so no instance
    anyone else may hold is changed; ``object.__setattr__`` passes the frozen guard, just as a
    frozen dataclass's ``__post_init__`` would.
    """
    object.__setattr__(config, section, getattr(config, section).model_copy(update=values))


def _expand_user(path: Path) -> Path:
    # ``~user`` for an unknown user raises RuntimeError; pydantic only turns ValueError into a
    # validation error, so translate it.
    try:
        return path.expanduser()
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ValueError(f"cannot expand '~' in path: {exc}") from None


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _check_ws_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"expected a ws:// or wss:// URL, got scheme {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    _ = parts.port  # raises ValueError for a port that is not a number or out of range
    return url


def _check_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"expected an IPv4 or IPv6 address, got {value[:64]!r}") from None


def _check_url_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("a URL path must start with '/'")
    return value


#: a filesystem path; a leading ``~`` is expanded to the home directory
ExpandedPath = Annotated[Path, AfterValidator(_expand_user)]
#: a TCP port to listen on; 0 lets the operating system pick a free one (tests, devnet)
ListenPort = Annotated[int, Field(ge=0, le=65_535)]
#: a TCP port others connect to
Port = Annotated[int, Field(ge=1, le=65_535)]
#: an interface address or host name to bind or connect to
Host = Annotated[str, Field(min_length=1, max_length=253)]
#: strictly positive seconds
Seconds = Annotated[float, Field(gt=0, le=30 * 24 * 3600)]
#: a message or body size limit in bytes
ByteLimit = Annotated[int, Field(ge=KIB, le=4 * GIB)]
WsUrl = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_check_ws_url)]
IpAddress = Annotated[str, AfterValidator(_check_ip)]
UrlPath = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_check_url_path)]
_WALLET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_SS58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]{46,48}")
_HEX_KEY = re.compile(r"[0-9a-f]{64}")


def _check_wallet_name(value: str) -> str:
    if not _WALLET_NAME.fullmatch(value):
        raise ValueError(
            "expected a wallet or hotkey name: letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-'"
        )
    return value


def _check_ss58(value: str) -> str:
    if not _SS58.fullmatch(value):
        raise ValueError(
            f"expected an ss58 hotkey address (46 to 48 base58 characters), got {value[:64]!r}"
        )
    return value


def _check_hex_key(value: str) -> str:
    if not _HEX_KEY.fullmatch(value):
        raise ValueError(
            "expected an ed25519 public key as 64 hex characters, got "
            f"{len(value)} characters {value[:16]!r}..."
        )
    return value


#: a bittensor wallet or hotkey name: a directory name, so no separators or ``..``
WalletName = Annotated[str, Field(max_length=128), AfterValidator(_check_wallet_name)]
#: an ss58 address as bittensor prints hotkeys
Ss58Address = Annotated[str, AfterValidator(_check_ss58)]
#: a raw 32-byte ed25519 public key in hex (64 characters), stored lower case
HexPublicKey = Annotated[str, BeforeValidator(_lower), AfterValidator(_check_hex_key)]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)
]

_SQLALCHEMY_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def check_database_url(url: str) -> str:
    if not _SQLALCHEMY_URL.match(url):
        raise ValueError(
            "expected an SQLAlchemy URL such as sqlite+aiosqlite:///path/validator.db or "
            "postgresql+asyncpg://user@host/db"
        )
    return url


def url_password(url: str) -> str | None:
    """The password embedded in ``url``, if any (``None`` when the URL cannot be parsed)."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def mask_url_password(url: str) -> str:
    """``url`` with an embedded password replaced by ``***``."""
    password = url_password(url)
    if not password:
        return url
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***{at}{hostpart}"


__all__ = [
    "GIB",
    "KIB",
    "MIB",
    "ByteLimit",
    "ExpandedPath",
    "HexPublicKey",
    "Host",
    "IpAddress",
    "ListenPort",
    "LogLevel",
    "Port",
    "Seconds",
    "Section",
    "Ss58Address",
    "UrlPath",
    "WalletName",
    "WsUrl",
    "check_database_url",
    "fill_default",
    "mask_url_password",
    "url_password",
]
