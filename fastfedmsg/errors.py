"""Every exception fastfedmsg raises.

One tree rooted in FastFedmsgError.  Where fedmsg raised a builtin for the
same problem, the class also derives from that builtin, so that an
``except IOError`` or ``except AttributeError`` written for fedmsg still
catches it.
"""


class FastFedmsgError(Exception):
    """Base class of every fastfedmsg error."""


# -- configuration -----------------------------------------------------------

class ConfigError(FastFedmsgError, ValueError):
    """A config file or value is wrong.

    Attributes: ``key`` (or None), ``source`` (the file or "init() keyword"
    that set it, or None).
    """

    def __init__(self, message, key=None, source=None):
        super().__init__(message)
        self.key = key
        self.source = source


class AlreadyInitializedError(FastFedmsgError, ValueError):
    """init() was called twice in one thread (fedmsg: ValueError)."""


# -- sockets and transports --------------------------------------------------

class BindError(FastFedmsgError, IOError):
    """No endpoint listed for the name could be bound (fedmsg: IOError).

    ``attempts`` is a list of (endpoint, reason) pairs.
    """

    def __init__(self, message, name=None, attempts=()):
        super().__init__(message)
        self.name = name
        self.attempts = list(attempts)


class NoEndpointError(FastFedmsgError, AttributeError):
    """No endpoint is configured for the publisher's name (fedmsg: AttributeError)."""

    def __init__(self, message, name=None):
        super().__init__(message)
        self.name = name


class NoTransportError(FastFedmsgError, AttributeError):
    """ZeroMQ is disabled and no other transport is configured (fedmsg: AttributeError)."""


class NoRelayError(FastFedmsgError, KeyError):
    """active=True but no relay address is configured (fedmsg: KeyError)."""

    def __str__(self):
        # KeyError's str() is the repr of its argument; show the sentence.
        return str(self.args[0]) if self.args else ""


class ClosedError(FastFedmsgError, RuntimeError):
    """The context was destroyed and then used."""


# -- messages ----------------------------------------------------------------

class EncodeError(FastFedmsgError, TypeError):
    """The message body holds a value JSON cannot carry."""


class InvalidMessageError(FastFedmsgError, ValueError):
    """The message cannot be sent as given (cycle, bad shape)."""


class NestingTooDeepError(InvalidMessageError, RecursionError):
    """The body nests deeper than Python's recursion limit lets it be encoded
    (fedmsg: RecursionError, which this also is)."""


class InvalidTopicError(FastFedmsgError, ValueError):
    """The topic or modname is not usable text."""


class PublishManyError(FastFedmsgError, TypeError, ValueError):
    """One item of publish_many() failed.

    ``index`` is its position; the items before it were sent, none after it.
    ``error`` is the underlying exception.  Caught by ``except TypeError``
    and ``except ValueError`` alike, as a single publish() would have raised
    one of the two.
    """

    def __init__(self, index, error):
        sent = "no item was sent" if index == 0 else "items 0..%d were sent" % (index - 1)
        super().__init__("item %d could not be published: %s (%s, none after it)"
                         % (index, error, sent))
        self.index = index
        self.error = error


# -- signing -----------------------------------------------------------------

class CertnameError(FastFedmsgError, KeyError):
    """sign_messages=True, but ``certnames`` has no entry for the key that
    fedmsg's lookup rules give (fedmsg: KeyError).  ``key`` is that key."""

    def __init__(self, message, key=None):
        super().__init__(message)
        self.key = key

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class SigningKeyError(FastFedmsgError, IOError):
    """The private key or certificate for signing is missing, unreadable,
    unusable or mismatched (fedmsg: IOError for a missing file).
    ``paths`` lists the files expected."""

    def __init__(self, message, paths=()):
        super().__init__(message)
        self.paths = list(paths)

    def __str__(self):
        return str(self.args[0]) if self.args else ""


# -- brokers (the STOMP transport) ----------------------------------------------

class BrokerError(FastFedmsgError, IOError):
    """Publishing through a message broker failed.

    ``broker`` is the "host:port" concerned, or None when no broker answered.
    """

    def __init__(self, message, broker=None):
        super().__init__(message)
        self.broker = broker


class BrokerRefusedError(BrokerError):
    """The broker answered with an ERROR frame: it refused the credentials
    (``refused == "credentials"``) or a destination (``"destination"``).

    ``reason`` is the broker's own text; ``destination`` the refused one, or None.
    """

    def __init__(self, message, broker=None, refused=None, reason=None, destination=None):
        super().__init__(message, broker)
        self.refused = refused
        self.reason = reason
        self.destination = destination


class BrokerTimeoutError(BrokerError, TimeoutError):
    """Confirmed publishing: the broker did not confirm in time.

    ``unconfirmed`` is how many messages of the call were still unconfirmed;
    they may or may not have reached the broker and will not be sent again.
    """

    def __init__(self, message, broker=None, unconfirmed=0):
        super().__init__(message, broker)
        self.unconfirmed = unconfirmed


class BrokerQueueFullError(BrokerError, BufferError):
    """More messages wait for a broker than stomp_queue_limit allows; the
    message was not queued."""


class TopicTypeError(InvalidTopicError, TypeError):
    """The topic or modname is neither str nor bytes.

    fedmsg raises TypeError there (it joins the parts with str.join), so this
    is caught by ``except TypeError`` as well as ``except ValueError``.
    """


# -- faults (issue 7) ------------------------------------------------------------

class HighWaterMarkError(FastFedmsgError, BufferError):
    """on_full='raise' or 'block': the socket's queue for a subscriber is at
    high_water_mark, so the message was not sent (no part of it).

    ``timeout_ms`` is how long publish waited (0 for on_full='raise');
    ``index`` is the position of the item in publish_many(), or None.
    """

    def __init__(self, message, timeout_ms=0, index=None):
        super().__init__(message)
        self.timeout_ms = timeout_ms
        self.index = index


class SubscriberTimeoutError(FastFedmsgError, TimeoutError):
    """wait_for_subscribers: fewer subscriptions than asked for arrived in time.

    ``expected`` and ``seen`` count subscriptions; ``timeout`` is in seconds.
    """

    def __init__(self, message, expected=0, seen=0, timeout=0.0):
        super().__init__(message)
        self.expected = expected
        self.seen = seen
        self.timeout = timeout


class ForkedContextError(ClosedError):
    """A context made before os.fork() was used in the child, and no fresh
    one could be made there (in bind mode the parent still holds the port)."""


class MessageTooLargeError(InvalidMessageError):
    """The built message is larger than max_message_size; nothing was sent.

    ``size`` and ``limit`` are in bytes (both frames together).
    """

    def __init__(self, message, size=0, limit=0):
        super().__init__(message)
        self.size = size
        self.limit = limit
