"""The WebSocket wire, client side, as little of it as a viewer needs (RFC 6455): the handshake
request and the check of its answer, server frames cut out of the bytes as they arrive, and the
client's own (masked) frames. Pure functions and one buffer, no I/O, so they are tested alone."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 16384  # a handshake answer longer than this is not one
MAX_MESSAGE = 1 << 24  # a larger frame is a broken stream, not a message


class ProtocolError(Exception):
    """The bytes are not a WebSocket stream a server may send."""


def handshake(host: str, target: str) -> tuple[bytes, bytes]:
    """The upgrade request for `target` (path and query) and the Sec-WebSocket-Accept it must
    be answered with."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    return request, accept


def upgraded(head: bytes, accept: bytes) -> None:
    """Check the server's answer (up to and without the blank line); ProtocolError names what
    is wrong (a refusal's status line)."""
    status, _, rest = head.partition(b"\r\n")
    if not status.startswith(b"HTTP/1.1 101"):
        raise ProtocolError(status.decode("latin-1")[:120] or "no answer")
    for line in rest.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-accept" and value.strip() == accept:
            return
    raise ProtocolError("the handshake answer does not accept our key")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked, final client frame. The mask key is zero: the payload goes out as it is (a
    server cannot tell a zero key from any other, and nothing here needs the mask's defence
    against proxies' caches)."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return head + b"\0\0\0\0" + payload


def close_code(payload: bytes) -> int:
    """The status code of a close frame's payload (1005: none given)."""
    return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005


@dataclass
class Message:
    opcode: int  # TEXT, BINARY, CLOSE, PING or PONG
    payload: bytes


class FrameReader:
    """Server frames out of a byte stream fed in pieces of any size: whole messages (fragments
    joined) and control frames, in order."""

    def __init__(self) -> None:
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._opcode = TEXT

    def feed(self, data: bytes) -> list[Message]:
        data = self._buffer + data if self._buffer else data
        messages: list[Message] = []
        pos, end = 0, len(data)
        while end - pos >= 2:
            first, second = data[pos], data[pos + 1]
            if second & 0x80:
                raise ProtocolError("a server frame is never masked")
            length, start = second & 0x7F, pos + 2
            if length == 126:
                if end - start < 2:
                    break
                length, start = (data[start] << 8) | data[start + 1], start + 2
            elif length == 127:
                if end - start < 8:
                    break
                length, start = int.from_bytes(data[start : start + 8], "big"), start + 8
            if length > MAX_MESSAGE:
                raise ProtocolError(f"a frame of {length} bytes")
            if end - start < length:
                break
            pos = start + length
            self._frame(first, data[start:pos], messages)
        self._buffer = data[pos:] if pos < end else b""
        return messages

    def _frame(self, first: int, payload: bytes, messages: list[Message]) -> None:
        final, opcode = first & 0x80, first & 0x0F
        if opcode >= CLOSE:  # control frames are never fragmented and may come between
            messages.append(Message(opcode, payload))
            return
        if opcode != CONTINUATION:
            self._opcode, self._fragments = opcode, []
        elif not self._fragments:
            raise ProtocolError("a continuation without a first fragment")
        if final and not self._fragments:
            messages.append(Message(opcode, payload))
            return
        self._fragments.append(payload)
        if final:
            messages.append(Message(self._opcode, b"".join(self._fragments)))
            self._fragments = []
