"""Helpers shared by the fastfedmsg command-line tools.

The one piece of real logic here is ``split_topic``: fedmsg builds a full
topic as ``<prefix>.<environment>.<modname>.<topic...>``, and both
fastfedmsg-logger (``--json-lines``) and fastfedmsg-replay re-publish recorded
envelopes, so both need the (modname, topic) pair that gives that full topic
back.  The rest is argument parsing, logging set-up and reading files of JSON
lines with line numbers for error messages.
"""

import json
import logging
import os
import socket
import sys
from dataclasses import dataclass

import orjson

#: Prefix components assumed when a full topic does not start with the
#: configured topic_prefix: io.pagure, org.centos, org.release-monitoring, ...
FOREIGN_PREFIX_COMPONENTS = 2


@dataclass(frozen=True)
class TopicParts:
    """A full topic taken apart.

    ``prefix`` and ``environment`` are None when the topic has too few
    components to carry them (a few old messages such as
    ``fedoracollege.content.edit``); then ``modname`` is the first component
    and ``topic`` the rest, and ``modname + "." + topic`` is the full topic.
    """

    prefix: str | None
    environment: str | None
    modname: str
    topic: str

    @property
    def full_topic(self):
        if self.prefix is None:
            return self.modname + "." + self.topic
        return ".".join((self.prefix, self.environment, self.modname, self.topic))


def split_topic(full_topic, topic_prefix="org.fedoraproject"):
    """Split ``full_topic`` into prefix, environment, modname and topic.

    When it starts with ``topic_prefix + "."`` that prefix is stripped;
    otherwise the first two components are taken as the prefix.  What is
    left must hold an environment, a modname and at least one topic
    component; if it does not, modname is the first component of the whole
    topic and topic the rest.  Raises ValueError for a topic with no dot.
    """
    if not isinstance(full_topic, str):
        raise ValueError("a topic must be a string such as "
                         "'org.fedoraproject.prod.buildsys.tag'; found %s %r"
                         % (type(full_topic).__name__, full_topic))
    components = full_topic.split(".")
    if len(components) < 2 or not all(components):
        raise ValueError("topic %r cannot be split into modname and topic; expected "
                         "<prefix>.<environment>.<modname>.<topic...> with no empty "
                         "component" % (full_topic,))

    if topic_prefix and full_topic.startswith(topic_prefix + "."):
        prefix = topic_prefix
        rest = full_topic[len(topic_prefix) + 1:].split(".")
    else:
        prefix = ".".join(components[:FOREIGN_PREFIX_COMPONENTS])
        rest = components[FOREIGN_PREFIX_COMPONENTS:]

    if len(rest) < 3:
        return TopicParts(None, None, components[0], ".".join(components[1:]))
    return TopicParts(prefix, rest[0], rest[1], ".".join(rest[2:]))


def is_envelope(value):
    """True for a whole fedmsg envelope (a dict with a string 'topic' and a 'msg')."""
    return isinstance(value, dict) and isinstance(value.get("topic"), str) and "msg" in value


def loads(text):
    """Parse JSON as fedmsg's subscribers do: orjson, with the stdlib for what
    orjson refuses (NaN, Infinity, integers beyond 64 bits)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def read_json_lines(path):
    """Yield (line number, value, error) for each non-blank line of ``path``.

    ``error`` is None, or a sentence saying why the line is not JSON (then
    ``value`` is None).  Lines are numbered from 1.
    """
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield number, loads(line), None
            except (ValueError, UnicodeDecodeError) as exc:
                yield number, None, "not valid JSON (%s)" % (exc,)


def count_lines(path):
    """The number of non-blank lines in ``path`` (for a progress bar's total)."""
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def use_config(path):
    """Read the config from ``path`` (a file, or a folder of ``*.py`` files)
    instead of the usual search path, as FEDMSG_CONFIG does, for this process."""
    os.environ["FEDMSG_CONFIG"] = os.path.abspath(path)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def add_common_arguments(parser):
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v: info, -vv: debug)")


def configure_logging(prog, verbosity):
    """Log to stderr as 'PROG: LEVEL: message'; warnings and up unless -v."""
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity, 2)]
    logging.basicConfig(level=level, stream=sys.stderr,
                        format=prog + ": %(levelname)s: %(message)s")
