"""Benchmarks of fastfedmsg against fedmsg 1.1.7, plain pyzmq and a C floor.

Run ``python -m benchmarks`` from the repository root (``--quick`` for CI,
``--json FILE`` for the figures as data, ``--plot FILE.png`` for delivered
rate against body size).  Every publisher runs in its own process and sends
to a subscriber in another process whose receive loop is compiled
(fastfedmsg._loops), so what is measured is the publisher.

Modules: harness (the command), workers (the publisher and subscriber
processes), competitors (the publishers compared), workload (the messages
sent, from the shipped corpus of real Fedora messages), report (the table,
the targets and the plot).
"""
