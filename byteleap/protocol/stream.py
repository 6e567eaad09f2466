"""Record streams: many messages in one HTTP response body, each usable as soon as it arrives.

``POST /epoch`` answers with one record per challenge, written the moment that challenge is
done, so the validator can time every commit on its own clock (SPEC 4.5). The body is::

    record := u32le(len(frame)) || frame        (len(frame) >= 1)
    frame  := codec.encode(ChallengeResponse | EpochFailure)
    body   := record*                           (ends exactly at a record boundary)

There is no trailer: the number of records is known to both sides (one per challenge of the
request), and the end of the body is the end of the stream.

:class:`RecordReader` is the receiving side. It is incremental (feed it the chunks as they come),
checks a record's declared length against its cap *before* buffering it, and raises only
``ProtocolError`` subclasses, like :func:`byteleap.protocol.codec.decode`.
"""

from __future__ import annotations

import struct
from typing import Final

from byteleap.errors import ByteLeapError, MalformedMessage, MessageTooLarge, ProtocolError
from byteleap.protocol import codec
from byteleap.protocol.miner_api.challenges import ChallengeResponse, EpochFailure

#: media type of a record stream (``POST /epoch``'s 200 answer)
STREAM_CONTENT_TYPE: Final = "application/x-byteleap-records"
#: bytes of a record's length prefix
RECORD_PREFIX_BYTES: Final = 4

_LENGTH = struct.Struct("<I")

#: what a record of an epoch stream may carry
EpochRecord = ChallengeResponse | EpochFailure


def encode_record(message: EpochRecord, *, max_bytes: int | None = None) -> bytes:
    """``message`` as one record: its codec frame behind a u32le length.

    With ``max_bytes``, a frame larger than that raises ``MessageTooLarge`` here.
    """
    if not isinstance(message, ChallengeResponse | EpochFailure):
        raise TypeError(f"a record carries a ChallengeResponse or an EpochFailure, not {message!r}")
    frame = codec.encode(message, max_bytes=max_bytes)
    return _LENGTH.pack(len(frame)) + frame


def epoch_failure_for(challenge_id: str, exc: ByteLeapError) -> EpochFailure:
    """The record that says ``challenge_id`` failed with ``exc`` (its code, its message clipped
    to the ``Text`` limit), as ``codec.api_error_for`` would answer it on ``POST /challenge``."""
    error = codec.api_error_for(exc)
    return EpochFailure(challenge_id=challenge_id, code=error.code, message=error.message)


class RecordReader:
    """Splits a record stream into messages, chunk by chunk.

    ``feed(chunk)`` returns the records completed by ``chunk``, in order; ``finish()`` says the
    stream ended. A record's declared length over ``max_record_bytes`` raises ``MessageTooLarge``
    as soon as its 4-byte prefix is in, before its body is buffered. A zero length, a frame that
    does not decode (``codec.MINER_RESPONSE``) or is neither a ``ChallengeResponse`` nor an
    ``EpochFailure``, or a byte after the ``max_records``-th record raises ``MalformedMessage``.

    The outcome does not depend on how the stream is chunked: records completed before a bad one
    are returned, even when they came in the same chunk, and the error is raised by the next
    ``feed`` or ``finish`` (and is readable at once as :attr:`error`). After an error every call
    raises it again.
    """

    def __init__(self, max_record_bytes: int, max_records: int) -> None:
        if max_record_bytes < 1 or max_records < 0:
            raise ValueError("max_record_bytes must be positive and max_records non-negative")
        self.max_record_bytes = int(max_record_bytes)
        self.max_records = int(max_records)
        self._buffer = bytearray()
        #: the declared length of the record being received, once its prefix is in
        self._length: int | None = None
        self._records = 0
        self._error: ProtocolError | None = None

    @property
    def records(self) -> int:
        """Records returned so far."""
        return self._records

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet make a whole record."""
        return len(self._buffer)

    @property
    def error(self) -> ProtocolError | None:
        """The error found in the stream, if any; ``feed`` and ``finish`` raise it."""
        return self._error

    def feed(self, data: bytes | bytearray | memoryview) -> list[EpochRecord]:
        """The records that ``data`` completes, in stream order."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        out: list[EpochRecord] = []
        offset = 0
        try:
            while (taken := self._take(offset, out)) > 0:
                offset += taken
        except ProtocolError as exc:
            self._error = exc
            self._buffer.clear()
            if not out:
                raise
        else:
            del self._buffer[:offset]
        return out

    def finish(self) -> None:
        """The stream ended: raise the error found, or ``MalformedMessage`` if it ended inside
        a record."""
        if self._error is not None:
            raise self._error
        if self._buffer:
            self._error = MalformedMessage(
                f"the stream ends inside a record ({len(self._buffer)} bytes left over)"
            )
            raise self._error

    def _take(self, offset: int, out: list[EpochRecord]) -> int:
        """Decode the record at ``offset`` of the buffer into ``out``; the bytes it took, or 0
        when it is not complete yet."""
        available = len(self._buffer) - offset
        if available == 0:
            return 0
        if self._records >= self.max_records:
            raise MalformedMessage(f"more than {self.max_records} records in the stream")
        if self._length is None:
            if available < RECORD_PREFIX_BYTES:
                return 0
            (length,) = _LENGTH.unpack_from(self._buffer, offset)
            if length == 0:
                raise MalformedMessage("a record of length 0")
            if length > self.max_record_bytes:
                raise MessageTooLarge(length, self.max_record_bytes)
            self._length = length
        size = RECORD_PREFIX_BYTES + self._length
        if available < size:
            return 0
        frame = bytes(self._buffer[offset + RECORD_PREFIX_BYTES : offset + size])
        self._length = None
        message = codec.decode(frame, codec.MINER_RESPONSE, max_bytes=self.max_record_bytes)
        if not isinstance(message, ChallengeResponse | EpochFailure):
            raise MalformedMessage(f"a record may not carry a {message.type}")
        self._records += 1
        out.append(message)
        return size


__all__ = [
    "RECORD_PREFIX_BYTES",
    "STREAM_CONTENT_TYPE",
    "EpochRecord",
    "RecordReader",
    "encode_record",
    "epoch_failure_for",
]
