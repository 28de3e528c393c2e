"""fastfedmsg-logger: publish messages from the shell through the relay.

A drop-in for fedmsg-logger.  It connects to ``relay_inbound`` in active
mode, as fedmsg-logger does, and publishes ``--message TEXT``, the JSON read
from stdin (``--json-input``), each stdin line as ``{"log": line}``, or, new
here, every line of a file of JSON messages (``--json-lines FILE``).

Where fedmsg-logger sleeps ``post_init_sleep`` and hopes the relay is
there, this tool lets init() wait until the relay's subscription has arrived
(fastfedmsg's active socket is an XPUB, which sees it), and fails with a clear
message, sending nothing, when no relay subscribes within --connect-timeout.
"""

import argparse
import logging
import sys
import time

from tqdm import tqdm

import fastfedmsg
from fastfedmsg.errors import FastFedmsgError
from fastfedmsg.tools.common import (
    add_common_arguments,
    configure_logging,
    count_lines,
    is_envelope,
    loads,
    read_json_lines,
    split_topic,
    use_config,
)

log = logging.getLogger(__name__)

PROG = "fastfedmsg-logger"


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Publish messages to the fedmsg bus through the relay (relay_inbound). "
                    "Without --message or --json-lines, each stdin line is sent as "
                    '{"log": LINE}.')
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--message", metavar="TEXT",
                        help="send this one message (parsed as JSON with --json-input)")
    source.add_argument("--json-lines", metavar="FILE",
                        help="send every line of FILE, one JSON object a line; a whole "
                             "envelope (with 'topic' and 'msg') keeps its modname and topic")
    parser.add_argument("--json-input", action="store_true",
                        help="read one JSON document from stdin (or parse --message as JSON)")
    parser.add_argument("--topic", default="log",
                        help="topic after the modname (default: %(default)s)")
    parser.add_argument("--modname", default="logger",
                        help="modname of the full topic (default: %(default)s)")
    parser.add_argument("--cert-prefix", default="shell",
                        help="certificate prefix for signing (default: %(default)s)")
    parser.add_argument("--config", metavar="FILE",
                        help="read this config file (or folder of *.py files) instead of "
                             "the usual fedmsg search path")
    parser.add_argument("--relay", metavar="ADDRESS",
                        help="the relay to connect to, overriding relay_inbound")
    parser.add_argument("--linger", metavar="MS", type=int,
                        help="how long to wait at exit for unsent messages (zmq_linger)")
    parser.add_argument("--connect-timeout", metavar="S", type=float, default=5.0,
                        help="give up, sending nothing, when no relay subscribes within S "
                             "seconds (default: %(default)s)")
    add_common_arguments(parser)
    return parser


def publish_json_lines(path, topic, modname, topic_prefix, total=None):
    """Publish each line of ``path``; return (sent, failed).

    An envelope line is published with the modname and topic of its full
    topic, any other line as the body on ``modname`` and ``topic``.  A line
    that cannot be read or sent is reported on stderr with its number.
    """
    sent = failed = 0
    started = time.monotonic()
    with tqdm(total=total, unit="msg", file=sys.stderr,
              disable=not sys.stderr.isatty()) as progress:
        for number, value, error in read_json_lines(path):
            progress.update(1)
            if error is None:
                error = _publish_line(value, topic, modname, topic_prefix)
            if error is None:
                sent += 1
            else:
                failed += 1
                progress.write("%s:%d: %s; line skipped" % (path, number, error),
                               file=sys.stderr)

    elapsed = time.monotonic() - started
    rate = sent / elapsed if elapsed > 0 else 0.0
    print("%s: sent %d, failed %d, %.0f msg/s (%.2f s)" % (PROG, sent, failed, rate, elapsed),
          file=sys.stderr)
    return sent, failed


def _publish_line(value, topic, modname, topic_prefix):
    """Publish one decoded line; return None, or why it could not be sent."""
    body = value
    if is_envelope(value):
        try:
            parts = split_topic(value["topic"], topic_prefix)
        except ValueError as exc:
            return str(exc)
        topic, modname, body = parts.topic, parts.modname, value["msg"]
    try:
        fastfedmsg.publish(topic=topic, msg=body, modname=modname)
    except (FastFedmsgError, TypeError, ValueError) as exc:
        return "cannot publish: %s" % (exc,)
    return None


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.json_lines and args.json_input:
        parser.error("--json-input reads stdin; --json-lines reads a file: pass one of them")
    configure_logging(PROG, args.verbose)
    # Read what can be read before connecting, so that a typo fails at once.
    bodies = total = None
    try:
        if args.json_lines:
            total = count_lines(args.json_lines)
        else:
            bodies = _read_bodies(args)
    except OSError as exc:
        print("%s: cannot read %s: %s" % (PROG, args.json_lines or "stdin", exc.strerror),
              file=sys.stderr)
        return 2
    except ValueError as exc:
        print("%s: %s" % (PROG, exc), file=sys.stderr)
        return 1

    settings = {"active": True, "name": "relay_inbound", "cert_prefix": args.cert_prefix,
                "active_connect_timeout": args.connect_timeout}
    if args.relay:
        settings["relay_inbound"] = args.relay
    if args.linger is not None:
        settings["zmq_linger"] = args.linger
    if args.config:
        use_config(args.config)
    try:
        context = fastfedmsg.init(**settings)
    except (FastFedmsgError, OSError, KeyError, ValueError) as exc:
        print("%s: %s" % (PROG, exc), file=sys.stderr)
        return 2

    try:
        if context.socket is not None and not context.relay_subscribed:
            print("%s: no relay subscribed at %s within %.1f s; start fastfedmsg-relay or "
                  "fedmsg-relay there, or pass --relay ADDRESS; nothing was sent"
                  % (PROG, context.endpoint, args.connect_timeout), file=sys.stderr)
            return 1
        if args.json_lines:
            _sent, failed = publish_json_lines(args.json_lines, args.topic, args.modname,
                                               context.config["topic_prefix"], total)
            return 1 if failed else 0
        return _send_bodies(args, bodies)
    except KeyboardInterrupt:
        return 130
    finally:
        fastfedmsg.destroy()


def _read_bodies(args):
    """The bodies to send from --message or stdin, parsed before connecting so
    that bad JSON fails at once; stdin lines are read as they come."""
    if args.json_input:
        text = args.message if args.message else sys.stdin.read()
        try:
            return [loads(text)]
        except ValueError as exc:
            raise ValueError("--json-input expects one JSON document such as '{\"a\": 1}' "
                             "(double quotes); could not parse it: %s" % (exc,)) from None
    if args.message:
        return [{"log": args.message}]
    return ({"log": line.strip()} for line in sys.stdin)


def _send_bodies(args, bodies):
    for body in bodies:
        try:
            fastfedmsg.publish(topic=args.topic, msg=body, modname=args.modname)
        except (FastFedmsgError, TypeError, ValueError) as exc:
            print("%s: cannot publish: %s" % (PROG, exc), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
