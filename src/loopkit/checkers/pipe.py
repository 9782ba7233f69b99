"""The pipe protocol between the engine and its python-checker worker processes: each message is a
4-byte length and a pickle (both ends are loopkit; the case may hold dates, the output lone surrogates)."""

from __future__ import annotations

import pickle
import struct
from typing import Any, BinaryIO

HEADER = struct.Struct(">I")
READY = b"ready"

# function, base_dir, output, case, pass_threshold, the iteration's tool calls
Request = tuple[str, str, str, dict[str, Any], float, list[dict[str, Any]]]
Reply = tuple[bool, Any]  # (True, (score, passed, feedback)) or (False, why it broke)


def write_message(stream: BinaryIO, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(stream: BinaryIO) -> Any | None:
    """The next message, or None when the other end has closed the pipe."""
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    data = _read_exactly(stream, HEADER.unpack(header)[0])
    return None if data is None else pickle.loads(data)
