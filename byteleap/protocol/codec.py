"""Turning messages into bytes and back, safely.

A binary frame (websocket binary frame, or an ``application/octet-stream`` HTTP body)::

    offset  size        content
    0       4           magic b"BLP1"
    4       4           header_len, u32 little-endian
    8       header_len  header: a UTF-8 JSON object, the message itself, with
                          - every ``bytes`` value, at any depth, replaced by {"$b": i}
                          - one extra top-level key "$blobs": [len_0, len_1, ...]
    8+h     Σ len_i     blob 0, blob 1, ... concatenated, no padding; the frame ends exactly here

So rows, roots and proofs travel as raw bytes (no base64, no JSON numbers), while the structure
stays readable in a hex dump. A websocket *text* frame (``str``) is the plain JSON object with no
``"$blobs"`` and no references; a message with ``bytes`` fields cannot travel that way.

:func:`decode` is the only door into the process for a peer's bytes, so it assumes the worst:

1. size first: anything over ``max_bytes`` is ``MessageTooLarge`` before a byte is parsed;
2. the frame: magic, header length within the frame and below ``MAX_HEADER_BYTES``;
3. the header: strict UTF-8, nesting depth at most ``MAX_JSON_DEPTH`` (checked in linear time
   *before* the JSON parser recurses), no duplicate keys, no NaN/Infinity, no integer longer than
   ``MAX_INT_DIGITS`` digits;
4. ``protocol_version``: missing or not an integer is malformed, another integer is
   ``UnsupportedVersion`` (before the ``type`` is looked at, so a newer peer learns why);
5. blobs: at most ``MAX_BLOBS``, lengths summing to exactly the rest of the frame, every blob
   referenced exactly once (no leftovers, no aliasing);
6. the model: the discriminated union with strict, bounded fields.

Whatever goes wrong raises a ``ProtocolError`` subclass and nothing else.
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any, Final, TypeVar

import numpy as np
from pydantic import TypeAdapter, ValidationError

from byteleap.errors import (
    ByteLeapError,
    MalformedMessage,
    MessageTooLarge,
    ProtocolError,
    UnsupportedVersion,
)
from byteleap.protocol.common import MAX_OPENINGS, MAX_TEXT, PROTOCOL_VERSION, Message
from byteleap.protocol.miner_api import MinerResponse, ValidatorApiMessage, ValidatorRequest
from byteleap.protocol.miner_api.errors import ApiError
from byteleap.protocol.worker_link import MinerToWorker, WorkerLinkMessage, WorkerToMiner
from byteleap.protocol.worker_link.session import ErrorReply

T = TypeVar("T")

MAGIC: Final = b"BLP1"
_PREFIX: Final = struct.Struct("<4sI")
#: bytes before the header: magic and header length
PREFIX_BYTES: Final = _PREFIX.size

#: default size limit of one worker-link message (a reveal of 8 GPUs at the default sampling of
#: an 8192-column challenge is about 17 MiB)
WORKER_LINK_MAX_BYTES: Final = 64 * 1024 * 1024
#: default size limit of one validator-API body
VALIDATOR_API_MAX_BYTES: Final = 64 * 1024 * 1024
#: largest JSON header; bulk data belongs in blobs
MAX_HEADER_BYTES: Final = 4 * 1024 * 1024
#: most blobs in one frame (two per revealed row, with room to spare)
MAX_BLOBS: Final = 4 * MAX_OPENINGS
#: deepest JSON nesting accepted (the deepest message needs 5)
MAX_JSON_DEPTH: Final = 16
#: longest JSON integer literal accepted, in characters (a u64 has 20 digits)
MAX_INT_DIGITS: Final = 24

BLOBS_KEY: Final = "$blobs"
REF_KEY: Final = "$b"

#: every message of the worker link, either direction
WORKER_LINK: TypeAdapter[WorkerLinkMessage] = TypeAdapter(WorkerLinkMessage)
#: what a worker accepts from its miner
MINER_TO_WORKER: TypeAdapter[MinerToWorker] = TypeAdapter(MinerToWorker)
#: what a miner accepts from a worker
WORKER_TO_MINER: TypeAdapter[WorkerToMiner] = TypeAdapter(WorkerToMiner)
#: every body of the validator API, either direction
VALIDATOR_API: TypeAdapter[ValidatorApiMessage] = TypeAdapter(ValidatorApiMessage)
#: what a miner accepts from a validator
VALIDATOR_REQUEST: TypeAdapter[ValidatorRequest] = TypeAdapter(ValidatorRequest)
#: what a validator accepts from a miner
MINER_RESPONSE: TypeAdapter[MinerResponse] = TypeAdapter(MinerResponse)


# --------------------------------------------------------------------------- encode


def _to_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _extract_blobs(value: Any, blobs: list[bytes]) -> Any:
    if isinstance(value, bytes):
        blobs.append(value)
        return {REF_KEY: len(blobs) - 1}
    if isinstance(value, dict):
        return {key: _extract_blobs(item, blobs) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_extract_blobs(item, blobs) for item in value]
    return value


def encode(message: Message, *, max_bytes: int | None = None) -> bytes:
    """``message`` as a binary frame.

    With ``max_bytes``, a frame larger than that raises ``MessageTooLarge`` here, so a sender
    learns before the peer refuses it.
    """
    if not isinstance(message, Message):
        raise TypeError(f"expected a protocol Message, got {type(message).__name__}")
    blobs: list[bytes] = []
    body = _extract_blobs(message.model_dump(mode="python"), blobs)
    # "type" first, so that a hex dump of a frame starts by saying what it is
    header_obj = {"type": body.pop("type"), BLOBS_KEY: [len(blob) for blob in blobs], **body}
    header = _to_json(header_obj).encode("utf-8")
    size = PREFIX_BYTES + len(header) + sum(len(blob) for blob in blobs)
    if max_bytes is not None and size > max_bytes:
        raise MessageTooLarge(size, max_bytes)
    return b"".join([_PREFIX.pack(MAGIC, len(header)), header, *blobs])


def encode_text(message: Message) -> str:
    """``message`` as plain JSON for a websocket text frame; only for messages without bytes."""
    if not isinstance(message, Message):
        raise TypeError(f"expected a protocol Message, got {type(message).__name__}")
    blobs: list[bytes] = []
    body = _extract_blobs(message.model_dump(mode="python"), blobs)
    if blobs:
        raise TypeError(f"{type(message).__name__} carries bytes: send it as a binary frame")
    return _to_json({"type": body.pop("type"), **body})


# --------------------------------------------------------------------------- decode

# On the header's UTF-8 bytes (no multi-byte sequence contains '"', '\\' or a bracket):
# an escape pair, then a string literal once escapes are gone. Both scans are linear, also on
# unterminated strings, because "[^"]*" stops at the next quote.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# +1 for an opening bracket, -1 for a closing one
_NESTING_STEP = np.zeros(256, dtype=np.int8)
_NESTING_STEP[[ord("["), ord("{")]] = 1
_NESTING_STEP[[ord("]"), ord("}")]] = -1


def _check_depth(raw: bytes) -> None:
    """Refuse JSON nested deeper than ``MAX_JSON_DEPTH`` before the JSON parser recurses into it.

    With escapes and string literals cut out, the nesting depth at any bracket is the running sum
    of ``_NESTING_STEP``: linear time, whatever the shape of the input. (Unbalanced brackets are
    left for the parser to refuse.)
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return
    skeleton = _STRING.sub(b"", _ESCAPE.sub(b"", raw)).translate(None, _NOT_BRACKETS)
    if len(skeleton) <= MAX_JSON_DEPTH:
        return
    depth = np.cumsum(_NESTING_STEP[np.frombuffer(skeleton, dtype=np.uint8)], dtype=np.int32)
    if int(depth.max()) > MAX_JSON_DEPTH:
        raise MalformedMessage(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in JSON object")
    return result


def _finite_float(text: str) -> float:
    if len(text) > 64:
        raise ValueError("number literal too long")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise ValueError("integer literal too long")
    return int(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not allowed")


def _parse_header(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage("header is not valid UTF-8") from None
    _check_depth(raw)
    try:
        obj = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            parse_constant=_no_constant,
        )
    except (ValueError, RecursionError) as exc:
        raise MalformedMessage(f"header is not valid JSON: {_clip(str(exc), 200)}") from None
    if not isinstance(obj, dict):
        raise MalformedMessage("header is not a JSON object")
    return obj


def _check_version(obj: dict[str, Any]) -> None:
    if "protocol_version" not in obj:
        raise MalformedMessage("protocol_version is missing")
    version = obj["protocol_version"]
    if type(version) is not int:
        raise MalformedMessage("protocol_version is not an integer")
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersion(version, PROTOCOL_VERSION)


def _utf8_clean(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Resolver:
    """Replaces blob references by blobs and refuses strings that are not valid Unicode."""

    def __init__(self, blobs: list[bytes] | None) -> None:
        self.blobs = blobs
        self.used = [False] * (len(blobs) if blobs is not None else 0)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            if not _utf8_clean(value):
                raise MalformedMessage("string contains a lone surrogate")
            return value
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if isinstance(value, dict):
            if REF_KEY in value:
                return self._blob(value)
            for key in value:
                if not _utf8_clean(key):
                    raise MalformedMessage("key contains a lone surrogate")
            return {key: self.resolve(item) for key, item in value.items()}
        return value

    def _blob(self, ref: dict[str, Any]) -> bytes:
        if self.blobs is None:
            raise MalformedMessage("a text frame cannot reference blobs")
        index = ref[REF_KEY]
        if len(ref) != 1 or type(index) is not int:
            raise MalformedMessage('a blob reference is exactly {"$b": <int>}')
        if not 0 <= index < len(self.blobs):
            raise MalformedMessage(f"blob reference {index} out of range")
        if self.used[index]:
            raise MalformedMessage(f"blob {index} referenced twice")
        self.used[index] = True
        return self.blobs[index]

    def check_all_used(self) -> None:
        if not all(self.used):
            raise MalformedMessage(f"blob {self.used.index(False)} is never referenced")


def _split_blobs(obj: dict[str, Any], body: memoryview) -> list[bytes]:
    if BLOBS_KEY not in obj:
        raise MalformedMessage(f"binary frame header has no {BLOBS_KEY!r}")
    lengths = obj.pop(BLOBS_KEY)
    if not isinstance(lengths, list):
        raise MalformedMessage(f"{BLOBS_KEY!r} is not a list")
    if len(lengths) > MAX_BLOBS:
        raise MalformedMessage(f"more than {MAX_BLOBS} blobs")
    if not all(type(length) is int and length >= 0 for length in lengths):
        raise MalformedMessage("blob lengths must be non-negative integers")
    total = sum(lengths)
    if total != len(body):
        what = "truncated" if total > len(body) else "has trailing bytes"
        raise MalformedMessage(f"frame {what}: blobs need {total} bytes, {len(body)} follow")
    blobs: list[bytes] = []
    offset = 0
    for length in lengths:
        blobs.append(bytes(body[offset : offset + length]))  # the only copy of each blob
        offset += length
    return blobs


def _clip(text: str, limit: int) -> str:
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _loc_part(part: int | str) -> str:
    text = str(part)
    if len(text) <= 64 and text.isascii() and text.isprintable():
        return text
    return "?"


def summarize(error: ValidationError, *, limit: int = 3) -> str:
    """A short, printable description of a validation failure.

    It echoes no input values (pydantic's messages may quote a bad ``type`` tag; that is clipped
    and stripped of non-printable characters), so it is safe to send back to the peer and to log.
    """
    items = error.errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for item in items[:limit]:
        loc = ".".join(_loc_part(part) for part in item["loc"])
        msg = "".join(ch if ch.isprintable() else "?" for ch in _clip(item["msg"], 160))
        parts.append(f"{loc}: {msg}" if loc else msg)
    if len(items) > limit:
        parts.append(f"and {len(items) - limit} more")
    return "; ".join(parts)


def _decode(data: bytes | bytearray | memoryview | str, max_bytes: int) -> Any:
    if isinstance(data, str):
        if len(data) > max_bytes:
            raise MessageTooLarge(len(data), max_bytes)
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedMessage("text frame is not valid Unicode") from None
        if len(raw) > max_bytes:
            raise MessageTooLarge(len(raw), max_bytes)
        obj = _parse_header(raw)
        if BLOBS_KEY in obj:
            raise MalformedMessage(f"a text frame cannot carry {BLOBS_KEY!r}")
        _check_version(obj)
        return _Resolver(None).resolve(obj)

    size = memoryview(data).nbytes
    if size > max_bytes:
        raise MessageTooLarge(size, max_bytes)
    frame = data if isinstance(data, bytes) else bytes(data)
    if size < PREFIX_BYTES:
        raise MalformedMessage(
            f"frame of {size} bytes is shorter than its {PREFIX_BYTES}-byte prefix"
        )
    magic, header_len = _PREFIX.unpack_from(frame)
    if magic != MAGIC:
        raise MalformedMessage("bad magic: not a ByteLeap frame")
    if header_len > MAX_HEADER_BYTES:
        raise MalformedMessage(f"header of {header_len} bytes exceeds {MAX_HEADER_BYTES}")
    end = PREFIX_BYTES + header_len
    if end > size:
        raise MalformedMessage(f"header length {header_len} runs past the end of the frame")
    obj = _parse_header(frame[PREFIX_BYTES:end])
    blobs = _split_blobs(obj, memoryview(frame)[end:])
    _check_version(obj)
    resolver = _Resolver(blobs)
    resolved = resolver.resolve(obj)
    resolver.check_all_used()
    return resolved


def decode(
    data: bytes | bytearray | memoryview | str, adapter: TypeAdapter[T], *, max_bytes: int
) -> T:
    """Decode and validate one message with ``adapter`` (e.g. ``WORKER_TO_MINER``).

    ``bytes`` must be a binary frame; ``str`` is a text frame (plain JSON, no blobs). Raises
    ``MessageTooLarge``, ``UnsupportedVersion`` or ``MalformedMessage``, and nothing else.
    """
    try:
        obj = _decode(data, max_bytes)
        return adapter.validate_python(obj)
    except ValidationError as exc:
        raise MalformedMessage(f"invalid message: {summarize(exc)}") from None
    except ProtocolError:
        raise
    except (ValueError, TypeError, RecursionError, OverflowError, struct.error) as exc:
        # defence in depth: every path above is meant to raise a ProtocolError itself
        raise MalformedMessage(f"undecodable message ({type(exc).__name__})") from None


# --------------------------------------------------------------------------- error replies


def _printable_token(text: str | None) -> str | None:
    if text is None:
        return None
    kept = "".join(ch for ch in text if "\x21" <= ch <= "\x7e")[:128]
    return kept or None


def error_reply_for(exc: ByteLeapError, in_reply_to: str | None = None) -> ErrorReply:
    """The worker-link ``ErrorReply`` that tells the peer what went wrong, by ``exc.code``.

    ``in_reply_to`` may come from the peer's own (bad) message: it is reduced to printable ASCII
    and 128 characters. The message is clipped to ``MAX_TEXT``.
    """
    return ErrorReply(
        code=exc.code,
        message=_clip(exc.message, MAX_TEXT),
        in_reply_to=_printable_token(in_reply_to),
    )


def api_error_for(exc: ByteLeapError) -> ApiError:
    """The validator-API error body for ``exc`` (pair it with ``http_status_for(exc)``)."""
    return ApiError(code=exc.code, message=_clip(exc.message, MAX_TEXT))


__all__ = [
    "BLOBS_KEY",
    "MAGIC",
    "MAX_BLOBS",
    "MAX_HEADER_BYTES",
    "MAX_INT_DIGITS",
    "MAX_JSON_DEPTH",
    "MINER_RESPONSE",
    "MINER_TO_WORKER",
    "PREFIX_BYTES",
    "REF_KEY",
    "VALIDATOR_API",
    "VALIDATOR_API_MAX_BYTES",
    "VALIDATOR_REQUEST",
    "WORKER_LINK",
    "WORKER_LINK_MAX_BYTES",
    "WORKER_TO_MINER",
    "api_error_for",
    "decode",
    "encode",
    "encode_text",
    "error_reply_for",
    "summarize",
]
