"""PublishRequest wire bytes, written directly.

The publisher builds each request as bytes instead of filling the generated `PublishRequest` class:
adding a message to the generated (upb) class, setting its attribute map item by item and asking its
`ByteSize()` cost about 4.7 us more CPU per event end to end (300,000 S4 events: 4.86 s user with this
encoder, 6.28 s with the generated classes, same machine, interleaved runs). The result is checked
against the generated classes' parser in tests/test_pubsub_encoding.py.

Layout (https://cloud.google.com/pubsub/docs/reference/rpc/google.pubsub.v1#publishrequest):
PublishRequest{1: topic, 2: repeated PubsubMessage}; PubsubMessage{1: data, 2: map<string, string>
attributes, 5: ordering_key}. A map entry is a message {1: key, 2: value}. Length-delimited fields are
a tag byte, the length as a varint, then the bytes (https://protobuf.dev/programming-guides/encoding/).
"""

from __future__ import annotations


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [varint(i) for i in range(1 << 14)]
_KEYS: dict[str, bytes] = {}  # attribute name -> its encoded key field (a handful of names per run)


def _vi(n: int) -> bytes:
    return _SMALL[n] if n < 16384 else varint(n)


def encode_attributes(attributes: dict[str, str]) -> bytes:
    """The attribute map's entries (field 2 of a PubsubMessage) as wire bytes."""
    parts: list[bytes] = []
    for k, v in attributes.items():
        kb = _KEYS.get(k)
        if kb is None:
            raw = k.encode("utf-8")
            kb = _KEYS[k] = b"\x0a" + _vi(len(raw)) + raw
        vb = v.encode("utf-8")
        vlen = _vi(len(vb))
        parts += (b"\x12", _vi(len(kb) + 1 + len(vlen) + len(vb)), kb, b"\x12", vlen, vb)
    return b"".join(parts)


def encode_message(data: bytes, attributes: dict[str, str], ordering_key: str = "", more: bytes = b"") -> bytes:
    """One PubsubMessage as an entry of a PublishRequest (field 2: tag, length, message).

    more: attribute entries encoded once with encode_attributes (the same for every message of a caller).
    """
    body = b"".join(
        (
            b"\x0a",
            _vi(len(data)),
            data,
            encode_attributes(attributes),
            more,
            b"\x2a" + _vi(len(kb := ordering_key.encode("utf-8"))) + kb if ordering_key else b"",
        )
    )
    return b"\x12" + _vi(len(body)) + body


def encode_request_head(topic: str) -> bytes:
    """A PublishRequest's topic field; the request is this followed by its encoded messages."""
    raw = topic.encode("utf-8")
    return b"\x0a" + _vi(len(raw)) + raw
