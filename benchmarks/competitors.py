"""The publishers compared, each behind the same small interface.

A competitor binds a PUB socket on a given port (high-water mark 0, as
fedmsg's default), then sends work items (benchmarks.workload) the way a
fedmsg user would: ``publish(topic=..., msg=..., modname=...)`` in a Python
loop, or one ``publish_many`` call per pass over the items, or, for the
floor, ready frames from a loop in C (fastfedmsg._loops.send_loop).

Only one competitor lives in a process (benchmarks.workers), so contexts,
caches and garbage of one never weigh on another.  The calls to publish are
made from this module on purpose: a guessed modname is then ``benchmarks``
for fastfedmsg and fedmsg alike.
"""

import datetime
import getpass
import itertools
import os
import time
import uuid
import warnings

import orjson
import zmq

from benchmarks.workload import ENVIRONMENT, TOPIC_PREFIX

#: The name every competitor's config binds for.
PUBLISHER_NAME = "bench.publisher"


def write_config(path, port, **extra):
    """The config file both fastfedmsg and fedmsg read in a publisher process;
    ``extra`` keys are added (fedmsg ignores the ones it does not know)."""
    config = {
        "topic_prefix": TOPIC_PREFIX,
        "environment": ENVIRONMENT,
        "endpoints": {PUBLISHER_NAME: ["tcp://127.0.0.1:%d" % port]},
        "high_water_mark": 0,
        "post_init_sleep": 0,
        "zmq_linger": 0,
        "sign_messages": False,
        "validate_signatures": False,
        **extra,
    }
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("config = %r\n" % (config,))
    return path


def _raw_pub_socket(port):
    context = zmq.Context()
    sock = context.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://*:%d" % port)
    return context, sock


class Competitor:
    """One publisher under test.  Subclasses fill in open, send and publish_one."""

    key = ""
    label = ""

    def open(self, port, config_path):
        raise NotImplementedError

    def prepare(self, items):
        """Turn work items into whatever send() consumes (cached per workload)."""
        return items

    def send(self, prepared, count):
        """Send ``count`` messages, cycling over ``prepared``."""
        publish = self.publish_one
        for modname, topic, msg in itertools.islice(itertools.cycle(prepared), count):
            publish(modname, topic, msg)

    def publish_one(self, modname, topic, msg):
        raise NotImplementedError

    def control(self, topic):
        """Send one control message (probe or end marker) on ``bench.TOPIC``."""
        self.publish_one("bench", topic.split(".", 1)[1], {})

    def close(self):
        pass


class FastfedmsgPublish(Competitor):
    key = "fastfedmsg"
    label = "fastfedmsg.publish (modname given)"

    def open(self, port, config_path):
        os.environ["FEDMSG_CONFIG"] = config_path
        import fastfedmsg

        self.fastfedmsg = fastfedmsg
        fastfedmsg.init(name=PUBLISHER_NAME)

    def send(self, prepared, count):
        publish = self.fastfedmsg.publish
        for modname, topic, msg in itertools.islice(itertools.cycle(prepared), count):
            publish(topic=topic, msg=msg, modname=modname)

    def publish_one(self, modname, topic, msg):
        self.fastfedmsg.publish(topic=topic, msg=msg, modname=modname)

    def close(self):
        self.fastfedmsg.destroy()


class FastfedmsgGuessed(FastfedmsgPublish):
    key = "fastfedmsg_guessed"
    label = "fastfedmsg.publish (modname guessed)"

    def send(self, prepared, count):
        publish = self.fastfedmsg.publish
        for _modname, topic, msg in itertools.islice(itertools.cycle(prepared), count):
            publish(topic=topic, msg=msg)


class FastfedmsgPublishMany(FastfedmsgPublish):
    key = "fastfedmsg_many"
    label = "fastfedmsg.publish_many"

    def prepare(self, items):
        return [{"topic": topic, "msg": msg, "modname": modname}
                for modname, topic, msg in items]

    def send(self, prepared, count):
        publish_many = self.fastfedmsg.publish_many
        passes, rest = divmod(count, len(prepared))
        for _ in range(passes):
            publish_many(prepared)
        if rest:
            publish_many(prepared[:rest])


class FedmsgPublish(Competitor):
    key = "fedmsg"
    label = "fedmsg 1.1.7 publish (modname given)"

    def open(self, port, config_path):
        warnings.simplefilter("ignore")
        import fedmsg
        import fedmsg.config

        self.fedmsg = fedmsg
        # fedmsg.init() reads the cached result of load_config(); prime it
        # with our file so that no machine config leaks in.
        fedmsg.config.load_config(filenames=[config_path], invalidate_cache=True)
        fedmsg.init(name=PUBLISHER_NAME)

    def send(self, prepared, count):
        publish = self.fedmsg.publish
        for modname, topic, msg in itertools.islice(itertools.cycle(prepared), count):
            publish(topic=topic, msg=msg, modname=modname)

    def publish_one(self, modname, topic, msg):
        self.fedmsg.publish(topic=topic, msg=msg, modname=modname)

    def close(self):
        self.fedmsg.destroy()


class FedmsgGuessed(FedmsgPublish):
    key = "fedmsg_guessed"
    label = "fedmsg 1.1.7 publish (modname guessed)"

    def send(self, prepared, count):
        publish = self.fedmsg.publish
        for _modname, topic, msg in itertools.islice(itertools.cycle(prepared), count):
            publish(topic=topic, msg=msg)


class PlainPyzmqOrjson(Competitor):
    """What a careful port to plain Python would do: the same envelope, built
    with a dict, encoded with orjson, sent with send_multipart."""

    key = "pyzmq_orjson"
    label = "plain pyzmq + orjson"

    def open(self, port, config_path):
        self.context, self.socket = _raw_pub_socket(port)
        self.counter = 0
        self.username = getpass.getuser()

    def publish_one(self, modname, topic, msg):
        topic = topic or "unspecified"
        msg = msg or {}
        full = modname + "." + topic
        if not full.startswith(TOPIC_PREFIX):
            full = TOPIC_PREFIX + "." + ENVIRONMENT + "." + full
        self.counter += 1
        envelope = {
            "topic": full,
            "msg": msg,
            "timestamp": int(time.time()),
            "msg_id": "%d-%s" % (datetime.datetime.now().year, uuid.uuid4()),
            "i": self.counter,
            "username": self.username,
        }
        self.socket.send_multipart(
            [full.encode("utf-8"), orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS)])

    def close(self):
        self.socket.close(linger=0)
        self.context.term()


class Floor(Competitor):
    """Envelopes built once by fastfedmsg, then sent from a loop in C, each
    frame made the way fastfedmsg's publisher makes it: what is left when
    building the envelope costs nothing."""

    key = "floor"
    label = "floor: ready frames from a C loop"
    pooled = True

    def open(self, port, config_path):
        from fastfedmsg import _core, _loops

        self.loops = _loops
        self.context, self.socket = _raw_pub_socket(port)
        self.builder = _core.Publisher(None, TOPIC_PREFIX, ENVIRONMENT, _core.username())

    def prepare(self, items):
        tops, bodies = [], []
        for modname, topic, msg in items:
            frame0, _envelope, frame1 = self.builder.build(topic, msg, modname)
            tops.append(frame0)
            bodies.append(frame1)
        return tops, bodies

    def send(self, prepared, count):
        self.loops.send_loop(self.socket, prepared[0], prepared[1], count, self.pooled)

    def publish_one(self, modname, topic, msg):
        frame0, _envelope, frame1 = self.builder.build(topic, msg, modname)
        self.socket.send_multipart([frame0, frame1])

    def close(self):
        self.socket.close(linger=0)
        self.context.term()


class FloorCopied(Floor):
    """The floor with each frame allocated by libzmq (zmq_msg_init_size, the
    way zmq_send and pyzmq's send_multipart make frames).  The publishing
    thread then mallocs every frame and libzmq's I/O thread frees it, and the
    two contend for glibc's arena lock: fastfedmsg reuses its frames'
    memory instead (fastfedmsg/_frames.pxi), which this row shows the worth
    of.  Targets are measured against the floor above, not this one."""

    key = "floor_copied"
    label = "floor, frames allocated by libzmq"
    pooled = False


class FloorWithOrjson(Floor):
    """The floor plus orjson.dumps of each body in the same C loop (the body
    alone, no envelope): about what a publisher could reach if it encoded
    bodies with orjson and everything else cost nothing.  fastfedmsg writes
    plain bodies with its own writer instead (fastfedmsg/_json_writer.h), so
    this row shows what that choice is worth."""

    key = "floor_orjson"
    label = "floor + orjson.dumps of each body"

    def prepare(self, items):
        tops, _bodies = Floor.prepare(self, items)
        return tops, [msg for _modname, _topic, msg in items]

    def send(self, prepared, count):
        self.loops.encode_loop(self.socket, prepared[0], prepared[1], count)


#: Every competitor, in the order of the table.
COMPETITORS = {cls.key: cls for cls in (
    FastfedmsgPublish, FastfedmsgGuessed, FastfedmsgPublishMany,
    FedmsgPublish, FedmsgGuessed, PlainPyzmqOrjson, Floor, FloorCopied, FloorWithOrjson)}

#: The competitors of the latency and memory runs.
LATENCY_COMPETITORS = ("fastfedmsg", "fedmsg")
BASELINE = "fedmsg"
FLOOR = "floor"
