"""Secrets in configuration: references to an environment variable or a file, never the value.

A config file says *where* a secret lives::

    join_token: {env: BYTELEAP_JOIN_TOKEN}
    join_token: {file: /run/secrets/byteleap_join_token}

so the file itself can be committed, printed and shared. The value is read only when someone
calls :meth:`Secret.resolve`, through an injectable environment mapping and file reader, which keeps
this module testable without touching the real environment.

An inline value (``{value: ...}`` or a plain string) is refused unless the caller explicitly
allows it (``load_config(..., allow_inline_secrets=True)``, or :meth:`Secret.inline` in code):
inline secrets end up in backups, shell histories and bug reports.

Whatever the source, a secret's value never appears in ``repr``, ``str`` or ``model_dump``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    model_serializer,
    model_validator,
)

from byteleap.config._base import ExpandedPath
from byteleap.errors import ConfigError

#: reads a secret file's text; injectable so tests need no real files
FileReader = Callable[[Path], str]

#: validation-context flag that permits inline secret values
ALLOW_INLINE = "allow_inline_secrets"

REDACTED = "***"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError("expected an environment variable name (letters, digits and '_')")
    return value


SecretEnvName = Annotated[str, Field(max_length=256), AfterValidator(_check_env_name)]


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def inline_allowed(info: ValidationInfo) -> bool:
    context = info.context
    return isinstance(context, Mapping) and bool(context.get(ALLOW_INLINE, False))


class Secret(BaseModel):
    """Where a secret comes from: exactly one of ``env``, ``file`` or (if allowed) ``value``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: SecretEnvName | None = Field(
        default=None, description="name of the environment variable that holds the secret"
    )
    file: ExpandedPath | None = Field(
        default=None,
        description="path of a file whose content is the secret (trailing newlines are dropped)",
    )
    value: SecretStr | None = Field(
        default=None,
        description="the secret itself; refused unless inline secrets are explicitly allowed",
    )

    # The environment the config was loaded with, restricted to the one variable this secret
    # names, so that resolve() agrees with load_config(env=...) without holding all of os.environ.
    _bound_env: dict[str, str] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _from_plain_string(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, str):
            if inline_allowed(info):
                return {"value": data}
            # never echo the string: it is probably the secret itself
            raise ValueError(
                "a secret must be a reference such as {env: VARIABLE} or {file: /path}, "
                "not a plain string (inline secrets are not allowed here)"
            )
        return data

    @model_validator(mode="after")
    def _exactly_one_source(self, info: ValidationInfo) -> Self:
        given = [name for name in ("env", "file", "value") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "a secret needs exactly one of 'env' or 'file' (or 'value' where inline secrets "
                f"are allowed), got {', '.join(given) or 'none'}"
            )
        if self.value is not None and not inline_allowed(info):
            raise ValueError(
                "inline secret values are not allowed here; use {env: VARIABLE} or {file: /path}"
            )
        return self

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_env(cls, name: str) -> Secret:
        return cls.model_validate({"env": name})

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Secret:
        return cls.model_validate({"file": os.fspath(path)})

    @classmethod
    def inline(cls, value: str) -> Secret:
        """A secret given in code (tests, devnet). Config files cannot do this unless allowed."""
        return cls.model_validate({"value": value}, context={ALLOW_INLINE: True})

    def bind_environment(self, env: Mapping[str, str]) -> None:
        """Remember the value of this secret's variable in ``env`` for later :meth:`resolve`."""
        if self.env is not None:
            self._bound_env = {self.env: env[self.env]} if self.env in env else {}

    # ------------------------------------------------------------------ use

    @property
    def source(self) -> str:
        """Where the value comes from, safe to print."""
        if self.env is not None:
            return f"environment variable {self.env}"
        if self.file is not None:
            return f"file {self.file}"
        return "inline value"

    def resolve(
        self, env: Mapping[str, str] | None = None, *, read_file: FileReader | None = None
    ) -> str:
        """The secret's value.

        ``env`` defaults to the environment the config was loaded with, else ``os.environ``;
        ``read_file`` defaults to reading UTF-8 text. Raises :class:`ConfigError` when the variable
        is unset or empty, or the file is missing, unreadable or empty.
        """
        if self.value is not None:
            text = self.value.get_secret_value()
        elif self.env is not None:
            mapping: Mapping[str, str]
            if env is not None:
                mapping = env
            elif self._bound_env is not None:
                mapping = self._bound_env
            else:
                mapping = os.environ
            if self.env not in mapping:
                raise ConfigError(f"secret from {self.source} is not set")
            text = mapping[self.env]
        else:
            assert self.file is not None
            reader = read_file or _read_text
            text = ""
            try:
                text = reader(self.file).rstrip("\r\n")
            except FileNotFoundError:
                problem = "does not exist"
            except PermissionError:
                problem = "cannot be read: permission denied"
            except UnicodeDecodeError:
                problem = "is not UTF-8 text"
            except OSError as exc:
                problem = f"cannot be read: {exc.strerror or type(exc).__name__}"
            else:
                problem = ""
            if problem:
                raise ConfigError(f"secret file {self.file} {problem}")
        if not text:
            raise ConfigError(f"secret from {self.source} is empty")
        return text

    def resolve_lines(
        self, env: Mapping[str, str] | None = None, *, read_file: FileReader | None = None
    ) -> list[str]:
        """The secret read as a list: one item per line or comma, blank and ``#`` lines skipped."""
        items: list[str] = []
        for line in self.resolve(env, read_file=read_file).splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            items.extend(part.strip() for part in stripped.split(",") if part.strip())
        return items

    # ------------------------------------------------------------------ never leak

    @model_serializer(mode="plain")
    def _serialize(self) -> dict[str, str]:
        if self.env is not None:
            return {"env": self.env}
        if self.file is not None:
            return {"file": str(self.file)}
        return {"value": REDACTED}

    def _identity(self) -> tuple[str | None, Path | None, str | None]:
        value = self.value.get_secret_value() if self.value is not None else None
        return (self.env, self.file, value)

    # The bound environment is a cache of where the value is read, not part of what the secret
    # *is*: two references to the same variable are equal.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        if self.env is not None:
            return f"Secret(env={self.env!r})"
        if self.file is not None:
            return f"Secret(file={str(self.file)!r})"
        return f"Secret(value={REDACTED!r})"

    __str__ = __repr__


__all__ = ["ALLOW_INLINE", "REDACTED", "FileReader", "Secret", "inline_allowed"]
