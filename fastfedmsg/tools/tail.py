"""fastfedmsg-tail: print the messages published on the bus, one JSON line each.

It subscribes to every endpoint in the config (or to each ``--endpoint``)
and writes each decoded envelope to stdout as it arrives.  ``--count`` and
``--timeout`` make it stop by itself, for scripts and tests.  Ctrl-C closes
the sockets and exits quietly.

``--validate`` checks each message's X.509 signature as fedmsg's
subscribers do (fastfedmsg.crypto.Validator: the CA at ``ca_cert_location``,
the CRL at ``crl_location``, ``routing_policy``) and wraps each printed
message as ``{"valid": BOOL, "reason": TEXT_OR_NULL, "message": {...}}``.
"""

import argparse
import json
import logging
import os
import sys
import time

import zmq

from fastfedmsg.config import load_config
from fastfedmsg.context import apply_socket_options
from fastfedmsg.errors import FastFedmsgError
from fastfedmsg.tools.common import add_common_arguments, configure_logging, loads, use_config

log = logging.getLogger(__name__)

PROG = "fastfedmsg-tail"


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Print every message published on the configured endpoints, one JSON "
                    "line each.",
        epilog="With --validate each line is instead "
               '{"valid": true|false, "reason": null|"why not", "message": {...}}: '
               "valid is true when the message's X.509 signature verifies, its "
               "certificate was issued by the CA at ca_cert_location and is not revoked "
               "by the CRL at crl_location, and routing_policy lets its common name send "
               "on its topic; reason says which check failed. Invalid messages are "
               "printed too, and count towards --count; the exit status does not "
               "depend on validity. --validate needs the 'sign' extra "
               "(pip install 'fastfedmsg[sign]').")
    parser.add_argument("--endpoint", action="append", metavar="ADDRESS",
                        help="subscribe to this endpoint instead of the configured ones "
                             "(repeatable)")
    parser.add_argument("--topic", default="",
                        help="print only messages whose full topic starts with this")
    parser.add_argument("--count", type=_positive(int, "a whole number of messages"),
                        metavar="N", help="stop after N messages (N >= 1)")
    parser.add_argument("--timeout", type=_positive(float, "a number of seconds"),
                        metavar="S", help="stop after S seconds without a message (S > 0)")
    parser.add_argument("--pretty", action="store_true",
                        help="indent each message and sort its keys")
    parser.add_argument("--validate", action="store_true",
                        help="check each message's signature with ca_cert_location, "
                             "crl_location and routing_policy from the config, and print "
                             'it wrapped as {"valid": ..., "reason": ..., "message": ...}')
    parser.add_argument("--config", metavar="FILE",
                        help="read this config file (or folder) instead of the usual ones")
    add_common_arguments(parser)
    return parser


def _positive(kind, what):
    """An argparse type: ``kind`` of the text, which must be above zero."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError("expected %s above 0, found %r" % (what, text))
        return value
    return convert


def endpoints_to_tail(args):
    """The endpoints to subscribe to and the config for socket options."""
    if args.endpoint:
        return list(args.endpoint), {}
    config = load_config()
    endpoints = []
    for name, addresses in config["endpoints"].items():
        if name == "relay_inbound":
            continue
        endpoints.extend(address for address in addresses if address not in endpoints)
    return endpoints, config


def open_subscribers(zmq_context, endpoints, topic, config):
    sockets = []
    for endpoint in endpoints:
        sub = zmq_context.socket(zmq.SUB)
        sockets.append(sub)
        sub.setsockopt(zmq.LINGER, 0)
        apply_socket_options(sub, config)
        sub.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
        sub.connect(endpoint)
        log.debug("tailing %s", endpoint)
    return sockets


def format_message(message, pretty):
    if pretty:
        return json.dumps(message, indent=2, sort_keys=True, ensure_ascii=False)
    return json.dumps(message, ensure_ascii=False)


def make_validator(config):
    """A fastfedmsg.crypto.Validator for ``config`` with its CA and CRL loaded.

    Raises FastFedmsgError (a bad setting), ImportError (no 'cryptography'),
    or ValueError saying which CA or CRL could not be read.
    """
    from fastfedmsg import crypto  # needs the 'sign' extra; only for --validate

    validator = crypto.Validator(config)
    try:
        crypto.load_trust_anchors(validator.ca_location, validator.crl_location)
    except (OSError, ValueError) as exc:
        raise ValueError(
            "cannot load the CA certificate %s or the CRL %s to check signatures: %s; "
            "set ca_cert_location and crl_location in the config (crl_location None "
            "checks no CRL)" % (validator.ca_location, validator.crl_location, exc)) from exc
    return validator


def validated(message, validator):
    """What --validate prints for ``message``."""
    reason = validator.check(message)
    return {"valid": reason is None, "reason": reason, "message": message}


def tail(sockets, count=None, timeout=None, pretty=False, out=sys.stdout, validator=None):
    """Print messages until ``count`` arrived or ``timeout`` s passed without one.

    With a ``validator`` (see make_validator) each message is printed wrapped
    as {"valid", "reason", "message"}.  Returns the number printed.
    """
    poller = zmq.Poller()
    for sub in sockets:
        poller.register(sub, zmq.POLLIN)

    printed = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    while count is None or printed < count:
        wait_ms = None
        if deadline is not None:
            wait_ms = max(0, int((deadline - time.monotonic()) * 1000))
        ready = poller.poll(wait_ms)
        if not ready:
            break
        for sub, _event in ready:
            frames = sub.recv_multipart()
            try:
                message = loads(frames[-1])
            except (ValueError, UnicodeDecodeError) as exc:
                log.warning("skipped a message on %r whose body is not JSON: %s",
                            frames[0][:200], exc)
                continue
            if validator is not None:
                message = validated(message, validator)
            out.write(format_message(message, pretty) + "\n")
            out.flush()
            printed += 1
            if count is not None and printed >= count:
                break
        if deadline is not None:
            deadline = time.monotonic() + timeout
    return printed


def main(argv=None):
    args = build_parser().parse_args(argv)
    configure_logging(PROG, args.verbose)
    if args.config:
        use_config(args.config)

    try:
        endpoints, config = endpoints_to_tail(args)
    except FastFedmsgError as exc:
        print("%s: %s" % (PROG, exc), file=sys.stderr)
        return 2
    if not endpoints:
        print("%s: no endpoint to subscribe to: the config lists none under 'endpoints'; "
              "add some or pass --endpoint ADDRESS" % PROG, file=sys.stderr)
        return 2

    validator = None
    if args.validate:
        try:
            # With --endpoint the config is read for the checker's keys only,
            # so it need not list endpoints.
            validator = make_validator(config or load_config(endpoints={}))
        except ImportError as exc:
            print("%s: --validate needs the 'cryptography' package, which comes with the "
                  "'sign' extra: pip install 'fastfedmsg[sign]' (%s)" % (PROG, exc),
                  file=sys.stderr)
            return 2
        except (FastFedmsgError, ValueError) as exc:
            print("%s: --validate: %s" % (PROG, exc), file=sys.stderr)
            return 2

    zmq_context = zmq.Context()
    sockets = []
    try:
        sockets = open_subscribers(zmq_context, endpoints, args.topic, config)
        printed = tail(sockets, args.count, args.timeout, args.pretty, validator=validator)
    except KeyboardInterrupt:
        return 130
    except zmq.ZMQError as exc:
        print("%s: cannot subscribe: %s; pass endpoints such as tcp://127.0.0.1:9940"
              % (PROG, exc), file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (tail ... | head).  Point stdout at /dev/null so
        # the interpreter's final flush does not fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        for sub in sockets:
            sub.close(linger=0)
        zmq_context.term()

    if args.count is not None and printed < args.count:
        print("%s: %d of %d messages arrived before %.1f s of silence"
              % (PROG, printed, args.count, args.timeout), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
