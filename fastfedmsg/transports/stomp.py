"""Publishing over STOMP when ZeroMQ is disabled (zmq_enabled=False, stomp_uri set).

fedmsg hands such messages to a Moksha hub, whose STOMP client sends each
envelope as a SEND frame; StompPublisher does the same job in-process, with
the same config keys, and without a hub.

Theory of operation
-------------------
Envelopes are built by the compiled core (``_core.Publisher`` with no
socket), so the SEND body is byte for byte the JSON the ZeroMQ path sends.
stomp.py owns each connection: the TCP or TLS socket, the CONNECT handshake,
heart-beats and the thread that reads the broker's frames.  The SEND frames
themselves are packed here and written with the transport's own ``send``
(under its socket lock), which avoids stomp.py's per-frame Python work.

Three threads meet in this class:

* the publishing thread writes frames under ``_write_lock``;
* stomp.py's reader thread delivers RECEIPT, ERROR and loss of the
  connection; it only ever takes ``_state`` (a Condition), never the write
  lock, so a publisher blocked in a socket write can never stop it from
  reading (which could otherwise deadlock against a single-threaded broker);
* a supervisor thread reconnects after a loss, trying the stomp_uri entries
  round robin from the one after the lost broker, waiting 0.1 s, 0.2 s, ...
  up to 60 s between rounds, and then writes, in order, the messages the lost
  connection left unconfirmed and those queued while no broker was reachable.

Lock order is always ``_write_lock`` then ``_state``; ``_state`` is never
held during socket I/O.

Delivery guarantees
-------------------
* Fire and forget (default): a frame written to a live socket is not
  tracked; frames written just before a connection dies may be lost, as with
  Moksha.  Messages published while no broker is connected are kept, in
  order, up to stomp_queue_limit, then publish raises BrokerQueueFullError.
  The first message to each new destination carries a receipt and publish
  waits for it, so that a broker that refuses the destination is reported at
  once (BrokerRefusedError) instead of the messages vanishing.
* Confirmed (stomp_confirm=True): every SEND carries a receipt; publish
  returns once the broker confirmed or raises BrokerTimeoutError after
  stomp_confirm_timeout seconds without a confirmation; messages still
  unconfirmed when a connection is lost are sent again, first, on the next
  one, so a message may arrive twice but none confirmed is lost by the
  publisher.

An ERROR frame names no message (brokers send no receipt-id with it); it is
blamed on the oldest unconfirmed message of that connection, which is the
frame the broker was processing since brokers handle frames in order.

stomp.py's own debug log prints the CONNECT frame with a pattern that does
not hide a passcode written without a space (``passcode:secret``); a filter
on its logger hides every passcode this module has used.

Known gaps
----------
* RabbitMQ decodes backslash escapes in CONNECT headers, which STOMP 1.1
  says it must not: a stomp_pass holding a backslash makes it close the
  connection without an ERROR frame, reported here as an unexplained close
  and retried, not as a refusal.
* RabbitMQ takes a bare destination (the default '{topic}') without error
  and routes it to its default exchange, where topic subscribers never see
  it; a warning is logged when the broker says it is RabbitMQ.
* coilmq 1.1.0 cannot parse a header value holding ':' and drops a
  connection whose frame a 4096-byte read cut in two, which any fast
  publisher causes (tests/stomp_broker.py patches the latter for the tests).
* An ERROR frame about a message sent without a receipt (fire and forget,
  destination already known good) is logged, not raised: no publish call is
  left to raise it to.
"""

import atexit
import collections
import itertools
import logging
import re
import threading
import time
import weakref

import stomp
import stomp.exception

from fastfedmsg import _core
from fastfedmsg.errors import (BrokerQueueFullError, BrokerRefusedError, BrokerTimeoutError,
                               ClosedError, ConfigError, PublishManyError)

log = logging.getLogger(__name__)

#: Defaults of the STOMP keys (documented in fastfedmsg.config).
DEFAULTS = {
    "stomp_user": "guest",
    "stomp_pass": "guest",
    "stomp_heartbeat": 0,
    "stomp_vhost": "/",
    "stomp_destination": "{topic}",
    "stomp_confirm": False,
    "stomp_confirm_timeout": 30.0,
    "stomp_connect_timeout": 10.0,
    "stomp_queue_limit": 10000,
}

DEFAULT_PORT = 61613
RECONNECT_DELAY_FIRST = 0.1
RECONNECT_DELAY_MAX = 60.0
#: Frames joined into one socket write when many are sent at once.
WRITE_BATCH_BYTES = 256 * 1024
#: Confirmed publish_many keeps at most two windows of this size unconfirmed.
CONFIRM_WINDOW = 512


# -- configuration -------------------------------------------------------------

_HOST_PORT = re.compile(r"^\s*(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\s]+))(?::(?P<port>\d+))?\s*$")


def parse_stomp_uri(value):
    """'host:port,host:port' (fedmsg's stomp_uri) -> [(host, port), ...].

    A missing port means 61613; an IPv6 address goes in brackets.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("config key 'stomp_uri' must list brokers as 'host:port,host:port'; "
                          "found %r" % (value,), key="stomp_uri")
    brokers = []
    for part in value.split(","):
        match = _HOST_PORT.match(part)
        port = int(match.group("port")) if match and match.group("port") else DEFAULT_PORT
        if not match or not 0 < port < 65536:
            raise ConfigError(
                "config key 'stomp_uri' must list brokers as 'host:port,host:port' (for "
                "example 'localhost:61613'); the entry %r is not a host:port" % (part,),
                key="stomp_uri")
        brokers.append((match.group("v6") or match.group("host"), port))
    return brokers


def _escape_header(text):
    # STOMP 1.1 header escaping: backslash, newline and colon.
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace(":", "\\c")


# -- keeping passcodes out of stomp.py's debug log ------------------------------

class _PasscodeFilter(logging.Filter):
    """Rewrites stomp.py log records that would show a passcode."""

    pattern = re.compile(r"passcode:[^'\"\s]*")

    def __init__(self):
        super().__init__()
        self.secrets = set()

    def filter(self, record):
        text = hidden = record.getMessage()
        shown = set()
        for secret in self.secrets:
            # As given or escaped as a STOMP header, and as repr() shows either.
            for form in (secret, _escape_header(secret)):
                shown.update((form, form.replace("\\", "\\\\")))
        for form in sorted(shown, key=len, reverse=True):
            hidden = hidden.replace(form, "********")
        hidden = self.pattern.sub("passcode:********", hidden)
        if hidden != text:
            record.msg, record.args = hidden, ()
        return True


_passcode_filter = _PasscodeFilter()
logging.getLogger("stomp.py").addFilter(_passcode_filter)


# -- one connection --------------------------------------------------------------

class _Outgoing:
    """One message on its way: kept until written (fire and forget) or confirmed."""

    __slots__ = ("destination", "body", "receipt", "written", "done", "error")

    def __init__(self, destination, body, receipt=None):
        self.destination = destination
        self.body = body
        self.receipt = receipt
        self.written = False
        self.done = False
        self.error = None


class _Link:
    """One stomp.py connection to one broker, and what its reader thread saw."""

    def __init__(self, owner, host, port):
        settings = owner.settings
        self.host, self.port = host, port
        self.address = "%s:%d" % (host, port)
        self.connected = False
        self.lost = False
        self.refusal = None
        self.server = None
        self.disconnect_receipt = None
        self.disconnect_confirmed = False

        heartbeat = settings["stomp_heartbeat"]
        self.connection = stomp.Connection11(
            [(host, port)], prefer_localhost=False, try_loopback_connect=False,
            reconnect_sleep_initial=0, reconnect_attempts_max=1,
            timeout=settings["stomp_connect_timeout"], heartbeats=(heartbeat, heartbeat),
            keepalive=True, vhost=settings["stomp_vhost"], auto_decode=False)
        if settings.get("stomp_ssl_crt") or settings.get("stomp_ssl_key"):
            self.connection.set_ssl(
                for_hosts=[(host, port)], cert_file=settings.get("stomp_ssl_crt"),
                key_file=settings.get("stomp_ssl_key"), ca_certs=settings.get("stomp_ssl_ca"))
            self._notice_tls_eof(self.connection.transport)
        self.connection.set_listener("fastfedmsg", _LinkListener(owner, self))

    @staticmethod
    def _notice_tls_eof(transport):
        # stomp.py 9 reads TLS sockets without blocking and takes an empty
        # read for "nothing yet", so when the broker goes away its reader
        # spins and the loss is only seen at the next write.  An empty read
        # from a non-blocking TLS socket is an EOF (no data raises
        # SSLWantReadError instead): stop the reader, which then reports the
        # disconnection.  Remove once stomp.py tells EOF apart itself.
        receive = transport.receive

        def receive_until_eof():
            data = receive()
            if data == b"" and not transport.blocking:
                transport.running = False
            return data

        transport.receive = receive_until_eof

    def write(self, data):
        """Write packed frames; raises OSError or a stomp.py exception if the link is gone."""
        transport = self.connection.transport
        if getattr(transport, "blocking", True):
            transport.send(data)
        else:
            # stomp.py >= 9 runs TLS sockets non-blocking and writes them from
            # its reader thread, fed by this queue.
            queue = transport.send_queue
            if queue is None:
                raise stomp.exception.NotConnectedException()
            queue.put(data)

    def close(self):
        sock = self.connection.transport.socket
        if sock is None or sock.fileno() == -1:
            return  # stomp.py's reader already closed it
        try:
            self.connection.transport.disconnect_socket()
        except Exception as exc:  # closing a socket that died may fail many ways
            log.debug("closing the connection to %s: %s", self.address, exc)


class _LinkListener(stomp.ConnectionListener):
    """Hands one link's events to its StompPublisher (runs on stomp.py's reader thread)."""

    def __init__(self, owner, link):
        self.owner = owner
        self.link = link

    def on_connected(self, frame):
        self.owner._on_connected(self.link, frame)

    def on_receipt(self, frame):
        self.owner._on_receipt(self.link, frame.headers.get("receipt-id"))

    def on_error(self, frame):
        self.owner._on_error(self.link, frame)

    def on_disconnected(self):
        self.owner._on_lost(self.link)

    def on_heartbeat_timeout(self):
        self.owner._on_lost(self.link)


def _error_reason(frame):
    body = frame.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    parts = [frame.headers.get("message", "").strip(), (body or "").strip()]
    return ": ".join(part for part in parts if part) or "no reason given"


# -- the publisher -------------------------------------------------------------------

_live_publishers = weakref.WeakSet()


@atexit.register
def _close_all():
    # Scripts often exit without fastfedmsg.destroy(); flush what they queued.
    for publisher in list(_live_publishers):
        publisher.close()


class StompPublisher:
    """Publishes fedmsg envelopes as STOMP SEND frames; see the module docstring.

    Raises BrokerRefusedError at construction when a broker refuses the
    credentials or the virtual host; an unreachable broker is not an error
    (messages are queued until one answers).
    """

    def __init__(self, config):
        settings = dict(DEFAULTS)
        settings.update((key, value) for key, value in config.items()
                        if key.startswith("stomp_") and value is not None)
        self.settings = settings
        self.brokers = parse_stomp_uri(settings.get("stomp_uri"))
        self.confirm = settings["stomp_confirm"]
        self.queue_limit = settings["stomp_queue_limit"]
        if settings["stomp_pass"]:
            _passcode_filter.secrets.add(settings["stomp_pass"])

        self._builder = _core.Publisher(None, config["topic_prefix"], config["environment"],
                                        _core.username())
        self._template = settings["stomp_destination"]
        self._destinations = {}          # full topic bytes -> destination text
        self._frame_heads = {}           # destination -> packed SEND head up to content-length
        self._good = set()               # destinations the broker confirmed once
        self._refused = {}               # destination -> BrokerRefusedError
        self._receipts = itertools.count(1)

        self._write_lock = threading.Lock()
        self._state = threading.Condition()
        self._link = None                # the live link, set once its backlog is written
        self._outbox = collections.deque()            # not yet written, in order
        self._unconfirmed = collections.OrderedDict()  # receipt -> _Outgoing
        self._refusal = None             # a credentials refusal seen while reconnecting
        self._dead_links = []            # lost links whose sockets the supervisor closes
        self._next_broker = 0
        self._closing = False
        self._closed = False
        self.sent = 0

        link = self._connect_round(0, raise_refusal=True)
        if link is None:
            log.warning("no STOMP broker answered at %s; keeping up to %d messages until one "
                        "does", self.uri, self.queue_limit)
        else:
            self._link = link
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name="fastfedmsg-stomp-supervisor")
        self._supervisor.start()
        _live_publishers.add(self)

    @property
    def uri(self):
        return ",".join("%s:%d" % broker for broker in self.brokers)

    @property
    def broker(self):
        """The "host:port" of the broker in use, or None while disconnected."""
        link = self._link
        return link.address if link is not None else None

    @property
    def i(self):
        return self._builder.i

    # -- publishing ----------------------------------------------------------------

    def publish(self, topic=None, msg=None, modname=None, pre_fire_hook=None):
        """Publish one message; see the module docstring for what "sent" means.

        Raises what fedmsg.publish raises for a bad message, and
        BrokerRefusedError, BrokerQueueFullError, BrokerTimeoutError (confirmed
        mode), ClosedError after close().
        """
        self._check_usable()
        frame0, _envelope, body = self._builder.build(topic, msg, modname or None,
                                                      pre_fire_hook)
        self._send(frame0, body)

    def build(self, topic=None, msg=None, modname=None, pre_fire_hook=None):
        """(frame0, envelope dict or None, frame1) without sending, as
        _core.Publisher.build; with send_frames, lets fastfedmsg.crypto sign."""
        self._check_usable()
        return self._builder.build(topic, msg, modname or None, pre_fire_hook)

    def send_frames(self, frame0, frame1):
        """Send an envelope built by build(): frame0 is the full topic, frame1 the JSON."""
        self._check_usable()
        self._send(frame0, frame1)

    def full_topic(self, topic=None, modname=None):
        return self._builder.full_topic(topic, modname)

    @property
    def closed(self):
        return self._closed

    def _send(self, frame0, body):
        destination = self._destination(frame0)
        if self.confirm or destination not in self._good:
            item = _Outgoing(destination, body, self._new_receipt())
            self._send_tracked([item])
            if self.confirm or item.written:
                # Fire and forget waits only for a first use that reached a
                # broker; queued, it is checked when the backlog is written.
                self._wait([item])
        else:
            self._send_untracked(destination, body)

    def publish_many(self, items, modname=None):
        """Publish every ``(topic, msg)`` pair or ``{topic, msg[, modname]}`` dict.

        Frames are written in batches; in confirmed mode the call returns once
        all were confirmed.  A bad item raises PublishManyError naming its index
        after the items before it were handed to the broker; so does
        BrokerRefusedError, unwrapped, for a destination the broker refused.
        """
        self._check_usable()
        modname = modname or _core.guess_modname()
        batch = []
        waiting = []
        count = 0

        for index, item in enumerate(items):
            try:
                topic, msg, item_modname = _unpack_item(item, modname)
                frame0, _envelope, body = self._builder.build(topic, msg, item_modname)
                destination = self._destination(frame0)
            except (TypeError, ValueError) as exc:
                self._flush_batch(batch, waiting)
                self._wait(waiting)
                raise PublishManyError(index, exc) from exc
            except BrokerRefusedError:
                # A destination known to be refused: send what came before.
                self._flush_batch(batch, waiting)
                self._wait(waiting)
                raise
            if self.confirm or destination not in self._good:
                tracked = _Outgoing(destination, body, self._new_receipt())
                batch.append(tracked)
                if destination not in self._good and not self.confirm:
                    # Learn whether the broker takes this destination before
                    # sending more to it (if a broker is connected at all).
                    self._flush_batch(batch, waiting)
                    self._wait([item for item in waiting if item.written])
                    waiting = []
            else:
                batch.append(_Outgoing(destination, body))
            count += 1
            if len(batch) >= CONFIRM_WINDOW:
                previous = waiting
                waiting = []
                self._flush_batch(batch, waiting)
                self._wait(previous)

        self._flush_batch(batch, waiting)
        self._wait(waiting)
        return count

    def _flush_batch(self, batch, waiting):
        if not batch:
            return
        tracked = [item for item in batch if item.receipt is not None]
        if tracked:
            self._send_tracked(batch)
            waiting.extend(tracked)
        else:
            self._send_untracked_many(batch)
        batch.clear()

    def _check_usable(self):
        if self._closed or self._closing:
            raise ClosedError(
                "this STOMP publisher was closed (fastfedmsg.destroy()); call "
                "fastfedmsg.init() again, or just publish, to get a new one")
        refusal = self._refusal
        if refusal is not None:
            raise refusal

    def _destination(self, frame0):
        destination = self._destinations.get(frame0)
        if destination is None:
            destination = self._template.format(topic=frame0.decode("utf-8"))
            if len(self._destinations) > 10000:
                self._destinations.clear()
            self._destinations[frame0] = destination
        refused = self._refused.get(destination)
        if refused is not None:
            raise refused
        return destination

    def _new_receipt(self):
        return b"ffm-%d" % next(self._receipts)

    def _pack(self, item):
        head = self._frame_heads.get(item.destination)
        if head is None:
            head = (b"SEND\ndestination:" + _escape_header(item.destination).encode("utf-8")
                    + b"\ncontent-type:application/json\ncontent-length:")
            self._frame_heads[item.destination] = head
        if item.receipt is None:
            return b"%b%d\n\n%b\x00" % (head, len(item.body), item.body)
        return b"%b%d\nreceipt:%b\n\n%b\x00" % (head, len(item.body), item.receipt, item.body)

    # -- writing -------------------------------------------------------------------

    def _send_untracked(self, destination, body):
        with self._write_lock:
            link = self._link
            if link is not None:
                head = self._frame_heads.get(destination)
                if head is None:
                    frame = self._pack(_Outgoing(destination, body))
                else:
                    frame = b"%b%d\n\n%b\x00" % (head, len(body), body)
                try:
                    link.write(frame)
                    self.sent += 1
                    return
                except (OSError, stomp.exception.StompException) as exc:
                    self._lost_while_writing(link, exc)
            self._queue([_Outgoing(destination, body)])

    def _send_untracked_many(self, items):
        with self._write_lock:
            link = self._link
            if link is not None:
                try:
                    self._write_items(link, items)
                    return
                except (OSError, stomp.exception.StompException) as exc:
                    self._lost_while_writing(link, exc)
            self._queue([item for item in items if not item.written])

    def _send_tracked(self, items):
        with self._write_lock:
            with self._state:
                if self._kept() + len(items) > self.queue_limit:
                    raise self._queue_full()
                for item in items:
                    if item.receipt is not None:
                        self._unconfirmed[item.receipt] = item
            link = self._link
            if link is not None:
                try:
                    self._write_items(link, items)
                    return
                except (OSError, stomp.exception.StompException) as exc:
                    self._lost_while_writing(link, exc)
            # Tracked items written before the loss are resent from
            # _unconfirmed; the rest wait in the outbox.
            self._outbox.extend(item for item in items if not item.written)

    def _write_items(self, link, items):
        """Write ``items`` in order in large chunks; mark each written (write lock held)."""
        chunk, size, start = [], 0, 0
        for index, item in enumerate(items):
            frame = self._pack(item)
            chunk.append(frame)
            size += len(frame)
            if size >= WRITE_BATCH_BYTES or index == len(items) - 1:
                link.write(b"".join(chunk))
                for done in items[start:index + 1]:
                    done.written = True
                self.sent += index + 1 - start
                chunk, size, start = [], 0, index + 1

    def _queue(self, items):
        # Write lock held.
        with self._state:
            room = self.queue_limit - self._kept()
        if len(items) > room:
            raise self._queue_full()
        if not self._outbox:
            log.warning("no STOMP broker connected; keeping messages (up to %d) until one "
                        "answers", self.queue_limit)
        self._outbox.extend(items)

    def _kept(self):
        # Messages held for a broker.  Confirmed mode tracks every message
        # (queued ones too) in _unconfirmed; fire and forget holds what waits
        # in the outbox (its few unconfirmed first uses are in there too, or
        # being waited for by their publisher).
        return len(self._unconfirmed) if self.confirm else len(self._outbox)

    def _queue_full(self):
        return BrokerQueueFullError(
            "%d messages already wait for a STOMP broker (tried %s) and stomp_queue_limit is "
            "%d, so this message was not queued; wait for a broker, or raise "
            "stomp_queue_limit" % (self._kept(), self.uri,
                                   self.queue_limit))

    def _lost_while_writing(self, link, exc):
        log.warning("writing to STOMP broker %s failed (%s); reconnecting", link.address, exc)
        self._on_lost(link)

    # -- waiting for confirmations ---------------------------------------------------

    def _wait(self, items):
        """Block until every item is confirmed; raise its error or BrokerTimeoutError."""
        if not items:
            return
        timeout = self.settings["stomp_confirm_timeout"]
        deadline = time.monotonic() + timeout
        with self._state:
            pending = [item for item in items if not item.done]
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._state.wait(remaining)
                still = [item for item in pending if not item.done]
                if len(still) < len(pending):
                    deadline = time.monotonic() + timeout
                pending = still
            for item in pending:
                self._unconfirmed.pop(item.receipt, None)
                item.done = True
            link = self._link

        for item in items:
            if item.error is not None:
                raise item.error
        if pending:
            where = ("broker %s did not confirm" % link.address if link is not None else
                     "no STOMP broker was reachable at %s to confirm" % self.uri)
            raise BrokerTimeoutError(
                "%s %d of %d messages within %s s; they may or may not have arrived and "
                "will not be sent again; check the broker or raise stomp_confirm_timeout"
                % (where, len(pending), len(items), timeout),
                broker=link.address if link is not None else None, unconfirmed=len(pending))
        for item in items:
            self._good.add(item.destination)

    # -- events from stomp.py's reader thread -------------------------------------------

    def _on_connected(self, link, frame):
        with self._state:
            link.connected = True
            link.server = frame.headers.get("server")
            self._state.notify_all()

    def _on_receipt(self, link, receipt):
        if receipt is None:
            return
        receipt = receipt.encode("ascii", "replace")
        with self._state:
            if receipt == link.disconnect_receipt:
                link.disconnect_confirmed = True
            else:
                item = self._unconfirmed.pop(receipt, None)
                if item is not None:
                    item.done = True
                    self._good.add(item.destination)
            self._state.notify_all()

    def _on_error(self, link, frame):
        reason = _error_reason(frame)
        with self._state:
            if not link.connected:
                link.refusal = BrokerRefusedError(
                    "STOMP broker %s refused the connection: %s. Check stomp_user and "
                    "stomp_pass (the password is not shown), and stomp_vhost (%r)"
                    % (link.address, reason, self.settings["stomp_vhost"]),
                    broker=link.address, refused="credentials", reason=reason)
            else:
                self._blame(link, reason)
            self._mark_lost(link)
            self._state.notify_all()

    def _blame(self, link, reason):
        # State lock held.  The oldest message this link has not confirmed is
        # the one the broker was processing.
        for receipt, item in self._unconfirmed.items():
            if item.written and item.receipt is not None:
                break
        else:
            log.error("STOMP broker %s sent an ERROR that names no message and closed the "
                      "connection: %s", link.address, reason)
            return
        del self._unconfirmed[receipt]
        first_use = item.destination not in self._good
        item.error = BrokerRefusedError(
            "STOMP broker %s refused a message sent to destination %r: %s.%s"
            % (link.address, item.destination, reason,
               " Set stomp_destination to a template the broker accepts, such as "
               "'/topic/{topic}' for RabbitMQ" if first_use else ""),
            broker=link.address, refused="destination" if first_use else "message",
            reason=reason, destination=item.destination)
        item.done = True
        if first_use:
            self._refused[item.destination] = item.error
        log.error("STOMP broker %s refused a message for %r: %s", link.address,
                  item.destination, reason)

    def _on_lost(self, link):
        with self._state:
            self._mark_lost(link)
            self._state.notify_all()

    def _mark_lost(self, link):
        # State lock held.
        if link.lost:
            return
        link.lost = True
        self._dead_links.append(link)
        if self._link is link:
            self._link = None
            if not self._closing:
                unconfirmed = sum(1 for item in self._unconfirmed.values() if item.written)
                log.warning("lost the connection to STOMP broker %s; %d unconfirmed messages "
                            "will be sent again", link.address, unconfirmed)

    # -- connecting ------------------------------------------------------------------

    def _connect_round(self, first, raise_refusal=False):
        """Try every broker once, from index ``first``; return a live link or None."""
        for step in range(len(self.brokers)):
            index = (first + step) % len(self.brokers)
            host, port = self.brokers[index]
            link = self._open(host, port)
            if link is None:
                continue
            if link.refusal is not None:
                if raise_refusal:
                    raise link.refusal
                log.error("%s", link.refusal)
                self._refusal = link.refusal
                continue
            self._next_broker = index + 1
            self._refusal = None
            log.info("publishing over STOMP to %s (%s)", link.address, link.server or "broker")
            if (link.server or "").startswith("RabbitMQ") and not self._template.startswith("/"):
                log.warning("stomp_destination %r has no /topic/ or /exchange/ prefix: RabbitMQ "
                            "routes such names to its default exchange, where topic "
                            "subscribers never see them", self._template)
            return link
        return None

    def _open(self, host, port):
        """Connect to one broker: a link that is connected, or refused; None if unreachable."""
        link = _Link(self, host, port)
        settings = self.settings
        log.debug("connecting to STOMP broker %s as %r", link.address, settings["stomp_user"])
        try:
            link.connection.connect(settings["stomp_user"], settings["stomp_pass"], wait=False,
                                    with_connect_command=True)
        except (OSError, stomp.exception.StompException) as exc:
            log.debug("STOMP broker %s did not answer: %s", link.address,
                      type(exc).__name__)
            link.close()
            return None

        deadline = time.monotonic() + settings["stomp_connect_timeout"]
        with self._state:
            while not (link.connected or link.lost or link.refusal):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._state.wait(remaining)
            answered = link.connected and not link.lost
            closed = link.lost
        if link.refusal is not None:
            link.close()
            return link
        if closed and not answered:
            # RabbitMQ does this, for one, when the CONNECT frame holds a
            # backslash it cannot decode.
            log.warning("STOMP broker %s closed the connection after CONNECT without saying "
                        "why; check stomp_user, stomp_pass and stomp_vhost", link.address)
            return None
        if not answered:
            log.warning("STOMP broker %s did not answer CONNECT within %s s", link.address,
                        settings["stomp_connect_timeout"])
            link.close()
            return None
        return link

    def _supervise(self):
        delay = RECONNECT_DELAY_FIRST
        while True:
            with self._state:
                while self._link is not None and not self._closing:
                    self._state.wait()
                dead, self._dead_links = self._dead_links, []
            for old in dead:
                # A broker may keep the socket open after an ERROR frame.
                old.close()
            if self._closing:
                return
            link = self._connect_round(self._next_broker)
            if link is not None and self._resume(link):
                delay = RECONNECT_DELAY_FIRST
                continue
            if link is not None:
                continue
            log.debug("no STOMP broker answered at %s; next round in %.1f s", self.uri, delay)
            with self._state:
                if not self._closing:
                    self._state.wait(delay)
            delay = min(delay * 2, RECONNECT_DELAY_MAX)

    def _resume(self, link):
        """Write the backlog on a new link, then make it the live one."""
        with self._write_lock:
            with self._state:
                resend = [item for item in self._unconfirmed.values() if item.written]
            backlog = resend + list(self._outbox)
            kept = [item for item in backlog if item.destination not in self._refused]
            if len(kept) < len(backlog):
                log.error("dropping %d queued messages for destinations the broker refused",
                          len(backlog) - len(kept))
            try:
                self._write_items(link, kept)
            except (OSError, stomp.exception.StompException) as exc:
                self._lost_while_writing(link, exc)
                link.close()
                # Untracked items that were written are gone with the link;
                # keep the others in order.
                self._outbox = collections.deque(
                    item for item in self._outbox if not item.written)
                return False
            self._outbox.clear()
            with self._state:
                if link.lost:
                    return False
                self._link = link
                self._state.notify_all()
        if backlog:
            log.warning("sent %d messages to STOMP broker %s after reconnecting (%d of them "
                        "again)", len(kept), link.address, len(resend))
        return True

    # -- closing -------------------------------------------------------------------

    def close(self):
        """Send what is queued if a broker is connected, disconnect, stop the threads.

        Waits up to stomp_connect_timeout for a broker to take queued messages
        (and, in confirmed mode, up to stomp_confirm_timeout for confirmations);
        logs how many were dropped otherwise.
        """
        if self._closed:
            return
        self._closing_wait()
        with self._state:
            self._closing = True
            self._closed = True
            link, self._link = self._link, None
            dropped = self._kept()
            self._state.notify_all()
        _live_publishers.discard(self)
        if dropped:
            log.warning("closing the STOMP publisher with %d messages no broker took", dropped)
        if link is not None:
            self._disconnect(link)
        if self._supervisor is not threading.current_thread():
            self._supervisor.join(self.settings["stomp_connect_timeout"])
        self._builder.close()

    def _closing_wait(self):
        deadline = time.monotonic() + self.settings["stomp_connect_timeout"]
        with self._state:
            while (self._outbox or self._unconfirmed) and time.monotonic() < deadline:
                self._state.wait(min(0.05, max(0.0, deadline - time.monotonic())))

    def _disconnect(self, link):
        receipt = b"ffm-disconnect-%d" % next(self._receipts)
        with self._state:
            link.disconnect_receipt = receipt
        try:
            with self._write_lock:
                link.write(b"DISCONNECT\nreceipt:%b\n\n\x00" % receipt)
        except (OSError, stomp.exception.StompException):
            link.close()
            return
        deadline = time.monotonic() + self.settings["stomp_connect_timeout"]
        with self._state:
            while not (link.disconnect_confirmed or link.lost):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("STOMP broker %s did not confirm DISCONNECT within %s s",
                                link.address, self.settings["stomp_connect_timeout"])
                    break
                self._state.wait(remaining)
        link.close()


def _unpack_item(item, modname):
    if type(item) is tuple and len(item) == 2:
        return item[0], item[1], modname
    if isinstance(item, dict):
        return item.get("topic"), item.get("msg"), item.get("modname") or modname
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1], modname
    raise TypeError("expected a (topic, msg) pair or a dict with 'topic' and 'msg', found %s"
                    % (type(item).__name__,))
