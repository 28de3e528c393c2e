"""fastfedmsg-config: print the merged configuration fastfedmsg would use.

The config files are read and checked as init() reads them
(fastfedmsg.config.load_config), then printed as JSON with passwords and key
paths masked.  ``--key KEY`` prints one value: a string as plain text,
anything else as JSON.
"""

import argparse
import json
import sys

from fastfedmsg.config import load_config, masked
from fastfedmsg.errors import FastFedmsgError
from fastfedmsg.tools.common import add_common_arguments, configure_logging, use_config

PROG = "fastfedmsg-config"


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Print the merged fedmsg configuration as JSON, secrets masked.")
    parser.add_argument("--key", metavar="KEY", help="print only the value of KEY")
    parser.add_argument("--config", metavar="FILE",
                        help="read this config file (or folder) instead of the usual ones")
    add_common_arguments(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    configure_logging(PROG, args.verbose)
    if args.config:
        use_config(args.config)

    try:
        shown = masked(load_config())
    except FastFedmsgError as exc:
        print("%s: %s" % (PROG, exc), file=sys.stderr)
        return 2

    if args.key is None:
        print(json.dumps(shown, indent=2, sort_keys=True, default=repr))
        return 0
    if args.key not in shown:
        print("%s: no key %r in the configuration; known keys: %s"
              % (PROG, args.key, ", ".join(sorted(shown))), file=sys.stderr)
        return 1
    value = shown[args.key]
    print(value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
