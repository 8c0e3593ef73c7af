"""The few protobuf wire-format pieces tael writes by hand: varints, fields, and the
``google.rpc.Status`` both OTLP transports answer errors with (HTTP in its body, gRPC in
``grpc-status-details-bin``). By hand so the server needs no googleapis-common-protos;
tests check the bytes against ``google.rpc``'s generated classes."""

from __future__ import annotations


def varint(n: int) -> bytes:
    """``n`` (>= 0) as a base-128 varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    """Field ``number`` holding the integer ``value`` (omitted when 0, as proto3 does;
    a negative int32 is written as its 10-byte two's complement)."""
    return varint(number << 3) + varint(value & 0xFFFFFFFFFFFFFFFF) if value else b""


def len_field(number: int, payload: bytes) -> bytes:
    """Field ``number`` holding ``payload`` (bytes, a string, or a message), length-delimited."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def status(code: int, message: str, details: bytes = b"") -> bytes:
    """A serialized ``google.rpc.Status``: field 1 int32 code, field 2 string message,
    field 3 ``details`` (one serialized ``google.protobuf.Any``, if any)."""
    raw = message.encode("utf-8", "replace")
    return varint_field(1, code) + (len_field(2, raw) if raw else b"") + (len_field(3, details) if details else b"")
