"""The shortest path: publish one message and receive it on a real SUB socket."""

import fastfedmsg


def test_publish_reaches_a_subscriber(endpoint_config, subscriber_factory):
    fastfedmsg.init(name=endpoint_config["name"])
    sub = subscriber_factory(endpoint_config["endpoint"])
    sub.wait_connected(lambda: fastfedmsg.publish(topic="probe", msg={}, modname="t"))

    fastfedmsg.publish(topic="hello", msg={"a": 1}, modname="demo")

    topic, envelope = sub.recv_json()
    assert topic == b"org.fedoraproject.dev.demo.hello"
    assert envelope["msg"] == {"a": 1}
    assert envelope["topic"] == "org.fedoraproject.dev.demo.hello"


def test_message_ids_are_distinct_version_4_uuids():
    import uuid

    from fastfedmsg import _core

    texts = [_core.uuid4_text() for _ in range(10000)]  # spans several urandom refills
    assert len(set(texts)) == len(texts)
    for text in texts:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
