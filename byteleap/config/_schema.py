"""Reading the shape of config models: which keys exist, what type each holds.

The loader needs this to route ``BYTELEAP_A__B`` to a field, to decide whether an environment
value is text or YAML, and to turn pydantic's error locations into dotted keys.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Tag

from byteleap.config.secrets import Secret


def _strip_annotated(tp: Any) -> Any:
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def union_members(tp: Any) -> list[Any]:
    """The members of a union, nested unions flattened and each member's ``Annotated`` kept
    (it carries discriminator tags), or ``[tp]`` for anything that is not a union."""
    inner = _strip_annotated(tp)
    if not _is_union(inner):
        return [tp]
    members: list[Any] = []
    for arg in get_args(inner):
        members.extend(union_members(arg))
    return members


def is_optional(tp: Any) -> bool:
    return any(_strip_annotated(member) is type(None) for member in union_members(tp))


def core_type(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and without ``| None``; a real union stays a union."""
    members = [m for m in union_members(tp) if _strip_annotated(m) is not type(None)]
    if len(members) == 1:
        return _strip_annotated(members[0])
    return _strip_annotated(tp)


def model_of(tp: Any) -> type[BaseModel] | None:
    """The model class ``tp`` holds, if it holds exactly one (ignoring ``None``)."""
    inner = core_type(tp)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return inner
    return None


def field_type(model: type[BaseModel], name: str) -> Any:
    info = model.model_fields.get(name)
    return None if info is None else info.annotation


def contains_secret(tp: Any) -> bool:
    return any(
        isinstance(m, type) and issubclass(m, Secret)
        for m in (_strip_annotated(member) for member in union_members(tp))
    )


def is_text(tp: Any) -> bool:
    """Whether an environment value for ``tp`` should be taken literally, not parsed as YAML."""
    inner = core_type(tp)
    if inner is str or (isinstance(inner, type) and issubclass(inner, PurePath)):
        return True
    if get_origin(inner) is Literal:
        return all(isinstance(arg, str) for arg in get_args(inner))
    return False


def is_list(tp: Any) -> bool:
    return get_origin(core_type(tp)) is list


def list_item(tp: Any) -> Any:
    args = get_args(core_type(tp))
    return args[0] if args else None


def _tagged_member(tp: Any, tag: str) -> Any | None:
    for member in union_members(tp):
        if get_origin(member) is typing.Annotated:
            for meta in get_args(member)[1:]:
                if isinstance(meta, Tag) and meta.tag == tag:
                    return member
    return None


@dataclass(frozen=True)
class Located:
    """Where a pydantic error location points, in the terms an operator uses."""

    path: tuple[str | int, ...]  # field names and list indexes, union tags removed
    secret: bool  # the location is inside a secret: never print the input
    parent: type[BaseModel] | None  # the model that owns the last key, if known

    @property
    def key(self) -> str:
        return dotted(self.path)


def dotted(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text


def locate(root: type[BaseModel], loc: tuple[str | int, ...]) -> Located:
    """Map a pydantic error ``loc`` to the dotted key it concerns."""
    current: Any = root
    path: list[str | int] = []
    parent: type[BaseModel] | None = None
    secret = False
    for segment in loc:
        if current is not None and contains_secret(current):
            secret = True
        if current is not None and isinstance(segment, str):
            member = _tagged_member(current, segment)
            if member is not None:  # a discriminated-union tag, not a key
                current = member
                continue
        model = model_of(current) if current is not None else None
        if isinstance(segment, int):
            path.append(segment)
            current = list_item(current) if current is not None and is_list(current) else None
        elif model is not None:
            path.append(segment)
            parent = model
            current = field_type(model, segment)
        else:
            path.append(str(segment))
            current = None
    if current is not None and contains_secret(current):
        secret = True
    return Located(tuple(path), secret, parent)


def iter_keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf key of ``model`` as ``(dotted key, FieldInfo)``; sections are descended."""
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        sub = model_of(info.annotation)
        if sub is not None and not contains_secret(info.annotation):
            yield from iter_keys(sub, key + ".")
        else:
            yield key, info


__all__ = [
    "Located",
    "contains_secret",
    "core_type",
    "dotted",
    "field_type",
    "is_list",
    "is_optional",
    "is_text",
    "iter_keys",
    "list_item",
    "locate",
    "model_of",
    "union_members",
]
