"""Showing a loaded configuration without its secrets, and finding the secrets in it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from pydantic import BaseModel

from byteleap.config._schema import dotted
from byteleap.config.secrets import FileReader, Secret
from byteleap.errors import ConfigError


def iter_secrets(config: BaseModel) -> Iterator[tuple[tuple[str | int, ...], Secret]]:
    """Every :class:`Secret` set in ``config``, with the key path that holds it."""

    def walk(
        value: Any, path: tuple[str | int, ...]
    ) -> Iterator[tuple[tuple[str | int, ...], Secret]]:
        if isinstance(value, Secret):
            yield path, value
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                yield from walk(getattr(value, name), (*path, name))
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                yield from walk(item, (*path, index))

    yield from walk(config, ())


def check_secrets(
    config: BaseModel,
    *,
    env: Mapping[str, str] | None = None,
    read_file: FileReader | None = None,
) -> None:
    """Resolve every secret in ``config`` once; the first that fails raises a ConfigError naming
    its key. Values are read and dropped, never returned."""
    for path, secret in iter_secrets(config):
        try:
            secret.resolve(env, read_file=read_file)
        except ConfigError as exc:
            raise ConfigError(exc.message, key=dotted(path)) from None


def redacted_dump(config: BaseModel) -> dict[str, Any]:
    """The effective configuration as plain JSON-compatible data, safe to print.

    A secret shows where it comes from (``{env: NAME}`` or ``{file: PATH}``), or ``***`` for an
    inline value; a password inside a database URL shows as ``***``.
    """
    return config.model_dump(mode="json")


def dump_yaml(config: BaseModel) -> str:
    """:func:`redacted_dump` as YAML, in the models' key order (for ``check-config``)."""
    return yaml.safe_dump(redacted_dump(config), sort_keys=False, default_flow_style=False)


__all__ = ["check_secrets", "dump_yaml", "iter_secrets", "redacted_dump"]
