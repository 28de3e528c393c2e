"""Contexts are per thread: each thread publishes on its own socket and endpoint,
counts ``i`` from 1 on its own, and every message it sends arrives.

Each worker thread builds its context, connects its own subscriber (sockets
never cross threads), waits for it with probes, then all workers publish at
once behind a barrier.  Failures in a worker are collected and re-raised in
the test.
"""

import threading

import pytest

import fastfedmsg
from conftest import Subscriber, free_port, write_config

THREADS = 4
MESSAGES = 300
JOIN_TIMEOUT = 60


def run_workers(count, work):
    """Run work(index, barrier) in ``count`` threads; return their results in order."""
    barrier = threading.Barrier(count, timeout=30)
    results = [None] * count
    errors = []

    def worker(index):
        try:
            results[index] = work(index, barrier)
        except BaseException as exc:  # re-raised in the test thread below
            errors.append(exc)
            barrier.abort()
        finally:
            fastfedmsg.destroy()

    threads = [threading.Thread(target=worker, args=(index,), name="publisher-%d" % index)
               for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    if errors:
        raise errors[0]
    return results


def receive_all(sub, count, index):
    """Receive ``count`` non-probe envelopes; check they are this thread's, in order."""
    envelopes = []
    while len(envelopes) < count:
        topic, envelope = sub.recv_json()
        if b"probe" in topic:
            continue
        assert topic == ("org.fedoraproject.dev.worker%d.burst" % index).encode("ascii")
        envelopes.append(envelope)
    return envelopes


@pytest.fixture
def thread_endpoints(config_dir):
    """One endpoint per worker name, in a config file every thread reads."""
    ports = [free_port() for _ in range(THREADS)]
    write_config(config_dir, post_init_sleep=0, zmq_linger=0, endpoints={
        "worker%d.host" % index: ["tcp://127.0.0.1:%d" % port]
        for index, port in enumerate(ports)})
    return ports


def test_each_thread_publishes_on_its_own_context(thread_endpoints):
    main_context = fastfedmsg.init(name="main.host", endpoints={
        "main.host": ["tcp://127.0.0.1:%d" % free_port()]})

    def work(index, barrier):
        context = fastfedmsg.init(name="worker%d.host" % index)
        sub = Subscriber("tcp://127.0.0.1:%d" % thread_endpoints[index])
        try:
            probes = []

            def probe():
                fastfedmsg.publish(topic="probe", msg={}, modname="worker%d" % index)
                probes.append(1)

            sub.wait_connected(probe)
            barrier.wait()
            for n in range(MESSAGES):
                fastfedmsg.publish(topic="burst", msg={"thread": index, "n": n},
                                   modname="worker%d" % index)
            envelopes = receive_all(sub, MESSAGES, index)
            return context, len(probes), envelopes
        finally:
            sub.close()

    results = run_workers(THREADS, work)

    contexts = [context for context, _probes, _envelopes in results]
    assert len({id(context) for context in contexts}) == THREADS
    assert len({context.endpoint for context in contexts}) == THREADS
    assert all(context not in (main_context,) for context in contexts)
    for index, (context, probes, envelopes) in enumerate(results):
        assert context.endpoint == "tcp://*:%d" % thread_endpoints[index]
        assert [envelope["msg"] for envelope in envelopes] == [
            {"thread": index, "n": n} for n in range(MESSAGES)]
        assert [envelope["i"] for envelope in envelopes] == list(
            range(probes + 1, probes + MESSAGES + 1))
        assert len({envelope["msg_id"] for envelope in envelopes}) == MESSAGES

    assert fastfedmsg.current_context() is main_context
    assert main_context.publisher.i == 0


def test_first_publish_in_each_thread_builds_its_context(thread_endpoints):
    def work(index, barrier):
        assert fastfedmsg.current_context() is None
        name = "worker%d.host" % index
        sub = Subscriber("tcp://127.0.0.1:%d" % thread_endpoints[index])
        try:
            sent = []

            def probe():
                # The first call creates the context from these keywords.
                fastfedmsg.publish(topic="probe", msg={}, modname="worker%d" % index,
                                   name=name)
                sent.append(1)

            sub.wait_connected(probe)
            context = fastfedmsg.current_context()
            assert context.name == name
            barrier.wait()
            fastfedmsg.publish_many(
                [("burst", {"thread": index, "n": n}) for n in range(MESSAGES)],
                modname="worker%d" % index)
            envelopes = receive_all(sub, MESSAGES, index)
            return len(sent), envelopes, context.publisher.i
        finally:
            sub.close()

    for index, (probes, envelopes, counted) in enumerate(run_workers(THREADS, work)):
        assert [envelope["i"] for envelope in envelopes] == list(
            range(probes + 1, probes + MESSAGES + 1))
        assert counted == probes + MESSAGES
        assert {envelope["msg"]["thread"] for envelope in envelopes} == {index}


def test_a_new_context_in_a_thread_counts_from_one_again(endpoint_config,
                                                         subscriber_factory):
    sub = subscriber_factory(endpoint_config["endpoint"])
    for _round in range(2):
        fastfedmsg.init(name=endpoint_config["name"])
        sent = []

        def probe():
            fastfedmsg.publish(topic="probe", msg={}, modname="t")
            sent.append(1)

        sub.wait_connected(probe)
        fastfedmsg.publish(topic="counted", msg={}, modname="t")
        topic, envelope = sub.recv_json()
        assert topic.endswith(b".counted")
        assert envelope["i"] == len(sent) + 1
        fastfedmsg.destroy()


def test_a_thread_started_after_another_ended_never_gets_its_context(endpoint_config):
    # A thread that ends without destroy() drops its context (and the
    # publisher the core had remembered for it); the next thread, often on
    # the ended one's thread id, builds its own.  Threads run one after the
    # other: the name's single endpoint is free again each time only if the
    # ended thread's context was released.
    seen = []
    errors = []

    def worker():
        try:
            fastfedmsg.publish(topic="t", msg={}, modname="m", name=endpoint_config["name"])
            context = fastfedmsg.current_context()
            seen.append((threading.get_ident(), id(context), context.publisher.i))
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    for _ in range(20):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive(), "a worker thread hung"
    if errors:
        raise errors[0]

    assert [counted for _ident, _context, counted in seen] == [1] * 20
