"""Loading a process's configuration: YAML file, then environment overrides, then validation.

Precedence, lowest first:

1. the model's defaults;
2. bittensor's environment conventions for keys the model lists in ``ENV_DEFAULTS``
   (``BT_NETWORK`` for ``chain.network``, ...), used only where the file is silent;
3. the YAML file;
4. ``BYTELEAP_<SECTION>__<KEY>`` environment variables (deeper keys add more ``__``).

Every failure is a :class:`~byteleap.errors.ConfigError` whose message names the dotted key, where
the bad value came from (the file, or the environment variable) and what was expected.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from byteleap.config._schema import (
    Located,
    contains_secret,
    dotted,
    is_list,
    is_optional,
    is_text,
    locate,
    model_of,
)
from byteleap.config.dump import iter_secrets
from byteleap.config.secrets import ALLOW_INLINE
from byteleap.errors import ConfigError

T = TypeVar("T", bound=BaseModel)

ENV_PREFIX = "BYTELEAP_"
ENV_SEPARATOR = "__"
#: how many problems one ConfigError lists before summarising the rest
_MAX_LISTED = 8


# --------------------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys instead of silently keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable key: the base class reports it properly
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely; any failure becomes a ConfigError with the line number."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"invalid YAML{where}: {problem}", source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=source) from None
    except Exception as exc:
        # PyYAML's constructors fail with plain exceptions on some input: a timestamp that is not
        # a real date (ValueError), an empty "!!int" (IndexError). Any of them is bad YAML.
        raise ConfigError(f"invalid YAML: {type(exc).__name__}: {exc}", source=source) from None


# --------------------------------------------------------------------------- environment


@dataclass(frozen=True)
class _Origin:
    path: tuple[str, ...]
    source: str  # what to name in errors: "env BYTELEAP_LINK__MINER_URL"


def _env_value(annotation: Any, raw: str, var: str, key: str) -> Any:
    """Turn an environment value into what the file would have held at this key."""
    if contains_secret(annotation):
        stripped = raw.strip()
        if stripped.startswith("{"):  # a reference written inline: {file: /run/secrets/x}
            try:
                return parse_yaml(raw, f"env {var}")
            except ConfigError:  # say nothing about the text: it may be the secret itself
                raise ConfigError(
                    "a value starting with '{' must be a reference such as {file: /path}",
                    key=key,
                    source=f"env {var}",
                ) from None
        if not stripped and is_optional(annotation):
            return None
        return {"env": var}  # the variable holds the secret itself: reference it, never copy it
    if is_text(annotation):
        return None if raw == "" and is_optional(annotation) else raw
    value = _parse_env_yaml(raw, var, key)
    if is_list(annotation) and isinstance(value, str):
        value = [item.strip() for item in value.split(",") if item.strip()]
    return value


def _parse_env_yaml(raw: str, var: str, key: str) -> Any:
    try:
        return parse_yaml(raw, f"env {var}")
    except ConfigError as exc:
        raise ConfigError(exc.message.split(": ", 1)[-1], key=key, source=f"env {var}") from None


def _env_target(model: type[BaseModel], keys: list[str], var: str) -> Any:
    """The annotation of the field ``keys`` names, or a ConfigError naming ``var``."""
    current: Any = model
    for depth, key in enumerate(keys):
        section = model_of(current)
        if section is None:
            raise ConfigError(
                f"{dotted(keys[:depth])!r} is a value, not a section, so it has no key {key!r}",
                key=dotted(keys[: depth + 1]),
                source=f"env {var}",
            )
        if key not in section.model_fields:
            what = "section" if depth == 0 else "key"
            raise ConfigError(
                f"unknown {what} {key!r} in environment variable {var}; "
                + _expected_keys(section, key),
                key=dotted(keys[: depth + 1]),
                source=f"env {var}",
            )
        current = section.model_fields[key].annotation
    return current


def _env_overrides(model: type[BaseModel], env: Mapping[str, str]) -> list[tuple[_Origin, Any]]:
    overrides: list[tuple[_Origin, Any]] = []
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :]
        if ENV_SEPARATOR not in rest:
            continue  # BYTELEAP_TEST_DATABASE_URL and friends are not config overrides
        parts = rest.split(ENV_SEPARATOR)
        if any(not part for part in parts):
            raise ConfigError(
                "an override name needs SECTION__KEY with no empty part "
                "(e.g. BYTELEAP_LINK__MINER_URL)",
                source=f"env {var}",
            )
        keys = [part.lower() for part in parts]
        annotation = _env_target(model, keys, var)
        value = _env_value(annotation, env[var], var, dotted(keys))
        overrides.append((_Origin(tuple(keys), f"env {var}"), value))
    return overrides


def _env_defaults(
    model: type[BaseModel], data: dict[Any, Any], env: Mapping[str, str]
) -> list[tuple[_Origin, Any]]:
    defaults: Mapping[str, str] = getattr(model, "ENV_DEFAULTS", {})
    found: list[tuple[_Origin, Any]] = []
    for key, var in defaults.items():
        raw = env.get(var, "")
        path = tuple(key.split("."))
        if raw and _lookup(data, path) is None:
            found.append((_Origin(path, f"env {var}"), raw))
    return found


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _assign(data: dict[Any, Any], origin: _Origin, value: Any, file_source: str) -> None:
    """Set ``origin.path`` in ``data``, copying the mappings on the way (YAML aliases share)."""
    node = data
    for depth, key in enumerate(origin.path[:-1]):
        child = node.get(key)
        if child is None:
            child = {}
        elif not isinstance(child, dict):
            raise ConfigError(
                f"expected a mapping of keys, so {origin.source} cannot set "
                f"{dotted(origin.path)!r} inside it",
                key=dotted(origin.path[: depth + 1]),
                source=file_source,
            )
        else:
            child = dict(child)
        node[key] = child
        node = child
    node[origin.path[-1]] = value


# --------------------------------------------------------------------------- errors


def _expected_keys(model: type[BaseModel], given: Any) -> str:
    names = list(model.model_fields)
    close = difflib.get_close_matches(str(given), names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}expected one of: {', '.join(names)}"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _problem(error: Mapping[str, Any], where: Located) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        last = where.path[-1] if where.path else ""
        expected = _expected_keys(where.parent, last) if where.parent is not None else ""
        return f"unknown key{'; ' + expected if expected else ''}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("value_error", "assertion_error"):
        return str(error.get("ctx", {}).get("error", error["msg"]))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        message = "expected a mapping of keys"
    else:
        message = error["msg"]
        if message.startswith("Input should be "):
            rest = message[len("Input should be ") :]
            if rest.startswith(("greater", "less", "a multiple")):
                rest = "a value " + rest
            message = "expected " + rest
    if where.secret:
        return message  # never print what was given for a secret
    if isinstance(value, Mapping | list | tuple) and not kind.endswith("_type"):
        return message
    return f"{message} (got {_show(value)})"


def _source_of(path: tuple[str | int, ...], origins: list[_Origin], file_source: str) -> str:
    for origin in sorted(origins, key=lambda o: len(o.path), reverse=True):
        if path[: len(origin.path)] == origin.path:
            return origin.source
    inside = [o.source for o in origins if o.path[: len(path)] == path]
    if inside:
        named = ", ".join(inside[:3]) + (", ..." if len(inside) > 3 else "")
        return f"{file_source} with {named}"
    return file_source


def _from_validation(
    model: type[BaseModel], exc: ValidationError, origins: list[_Origin], file_source: str
) -> ConfigError:
    problems: list[tuple[str | None, str, str]] = []
    for error in exc.errors(include_url=False):
        where = locate(model, tuple(error["loc"]))
        problems.append(
            (
                where.key or None,
                _source_of(where.path, origins, file_source),
                _problem(error, where),
            )
        )
    key, source, message = problems[0]
    if len(problems) > 1:
        lines = [message, f"{len(problems) - 1} more problem(s):"]
        for other_key, other_source, other_message in problems[1:_MAX_LISTED]:
            label = f"key {other_key!r}" if other_key else "config"
            lines.append(f"  - {other_source}: {label}: {other_message}")
        if len(problems) > _MAX_LISTED:
            lines.append(f"  - ... and {len(problems) - _MAX_LISTED} more")
        message = "\n".join(lines)
    return ConfigError(message, key=key, source=source)


# --------------------------------------------------------------------------- public API


def validate_config(
    model: type[T],
    data: Mapping[Any, Any] | None,
    *,
    source: str = "<data>",
    env: Mapping[str, str] | None = None,
    allow_inline_secrets: bool = False,
    check_secrets: bool = True,
) -> T:
    """Validate ``data`` (what a config file holds) with environment overrides applied.

    ``source`` names where ``data`` came from in error messages. ``env`` defaults to
    ``os.environ``. With ``check_secrets``, every configured secret must resolve now, so that a
    missing variable or file is reported at start-up rather than on first use.
    """
    environment: Mapping[str, str] = os.environ if env is None else env
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"the top level must be a mapping of sections, got {_show(data)}", source=source
        )
    merged: dict[Any, Any] = dict(data)
    origins: list[_Origin] = []
    for origin, value in _env_defaults(model, merged, environment) + _env_overrides(
        model, environment
    ):
        _assign(merged, origin, value, source)
        origins.append(origin)
    try:
        config = model.model_validate(merged, context={ALLOW_INLINE: allow_inline_secrets})
    except ValidationError as exc:
        raise _from_validation(model, exc, origins, source) from None
    except RecursionError:
        raise ConfigError("the configuration is nested too deeply", source=source) from None
    for path, secret in iter_secrets(config):
        secret.bind_environment(environment)
        if check_secrets:
            try:
                secret.resolve()
            except ConfigError as exc:
                raise ConfigError(
                    exc.message, key=dotted(path), source=_source_of(path, origins, source)
                ) from None
    return config


def parse_config(
    model: type[T],
    text: str,
    *,
    source: str = "<text>",
    env: Mapping[str, str] | None = None,
    allow_inline_secrets: bool = False,
    check_secrets: bool = True,
) -> T:
    """Like :func:`load_config` for YAML text that is already in memory."""
    return validate_config(
        model,
        parse_yaml(text, source),
        source=source,
        env=env,
        allow_inline_secrets=allow_inline_secrets,
        check_secrets=check_secrets,
    )


def read_config_text(path: str | os.PathLike[str]) -> str:
    """The text of a config file, or a ConfigError saying why it cannot be read."""
    file = Path(path)
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = "config file not found"
    except IsADirectoryError:
        problem = "is a directory, not a config file"
    except PermissionError:
        problem = "cannot read the config file: permission denied"
    except UnicodeDecodeError:
        problem = "the config file is not UTF-8 text"
    except OSError as exc:
        problem = f"cannot read the config file: {exc.strerror or type(exc).__name__}"
    raise ConfigError(problem, source=str(file))


def load_config(
    model: type[T],
    path: str | os.PathLike[str] | None,
    *,
    env: Mapping[str, str] | None = None,
    allow_inline_secrets: bool = False,
    check_secrets: bool = True,
) -> T:
    """Load ``model`` from the YAML file at ``path`` (``None``: defaults only) plus ``env``.

    ``env`` defaults to ``os.environ``; only ``BYTELEAP_*`` names containing ``__`` (and the
    bittensor variables in ``model.ENV_DEFAULTS``) are read from it. Raises ConfigError.
    """
    if path is None:
        return validate_config(
            model,
            None,
            source="<defaults>",
            env=env,
            allow_inline_secrets=allow_inline_secrets,
            check_secrets=check_secrets,
        )
    return parse_config(
        model,
        read_config_text(path),
        source=os.fspath(path),
        env=env,
        allow_inline_secrets=allow_inline_secrets,
        check_secrets=check_secrets,
    )


__all__ = [
    "ENV_PREFIX",
    "ENV_SEPARATOR",
    "load_config",
    "parse_config",
    "parse_yaml",
    "read_config_text",
    "validate_config",
]
