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
