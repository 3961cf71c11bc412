"""The hand-written PublishRequest encoder against the generated classes' parser."""

from __future__ import annotations

from google.pubsub_v1.types import pubsub as pst
from hypothesis import given
from hypothesis import strategies as st

from migrate.targets.pubsub_encoding import encode_attributes, encode_message, encode_request_head, varint

TEXT = st.text(max_size=300)  # lengths across the one- and two-byte varints, any Unicode
ATTRS = st.dictionaries(st.text(min_size=1, max_size=40), TEXT, max_size=6)


@given(
    topic=st.text(min_size=1, max_size=80),
    messages=st.lists(
        st.tuples(st.binary(max_size=20000), ATTRS, st.text(max_size=40)),
        max_size=5,
    ),
    fixed=ATTRS,
)
def test_requests_parse_back_to_what_was_encoded(topic, messages, fixed):
    more = encode_attributes(fixed)
    wire = encode_request_head(topic) + b"".join(encode_message(d, a, k, more) for d, a, k in messages)
    req = pst.PublishRequest.pb().FromString(wire)
    assert req.topic == topic
    assert len(req.messages) == len(messages)
    for got, (data, attrs, key) in zip(req.messages, messages, strict=True):
        assert got.data == data
        assert dict(got.attributes) == {**attrs, **fixed}
        assert got.ordering_key == key


def test_an_entry_is_as_long_as_the_generated_classes_say():
    """The publisher sizes requests (10 MB, 1 MB per key) by the entries' lengths; they must be exact."""
    entry = encode_message(b"x" * 200, {"event_id": "ev-1", "source": "plays/a.jsonl.gz:7"}, "DE")
    msg = pst.PubsubMessage.pb()(
        data=b"x" * 200, attributes={"event_id": "ev-1", "source": "plays/a.jsonl.gz:7"}, ordering_key="DE"
    )
    size = msg.ByteSize()
    assert len(entry) == 1 + len(varint(size)) + size
