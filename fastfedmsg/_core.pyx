# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled hot path of fastfedmsg.

Theory of operation
-------------------
A fedmsg envelope, encoded with sorted keys, always has the same shape::

    {"i":N,"msg":BODY,"msg_id":"YEAR-UUID4","timestamp":T,"topic":"FULL","username":"U"}

so a message is built by concatenation straight into a libzmq frame:

* BODY is the only part that needs a JSON encoder (_json_writer.h, with
  fedmsg's own encoder for the inputs only it writes as fedmsg does);
* ``,"topic":...,"username":...}`` and frame 0 depend only on
  (modname, topic), so they are cached per publisher;
* N is a counter, T comes from ``time()``, the year is recomputed once per
  second and the UUID is formatted from a buffer of random bytes.

libzmq is reached through pyzmq's socket handle (``Socket.underlying``) and
the ``zmq_msg_*`` functions of the very libzmq that pyzmq loaded, looked up at
import with ``dlopen(RTLD_NOLOAD)`` on pyzmq's compiled module.  We never link
libzmq ourselves: a second copy in the process makes every send fail with
ENOTSOCK, and linking pyzmq's bundled copy by name breaks on every pyzmq
upgrade.  So this module builds without ``zmq.h``.

The core never logs; errors are raised as fastfedmsg.errors types.
"""

import os
import threading
import time as _pytime
import json as _stdjson
import datetime as _datetime
import getpass as _getpass
import sys as _sys

import zmq
import zmq.backend.cython._zmq as _pyzmq_backend

from fastfedmsg import errors as _errors

cimport cython

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.object cimport PyObject
from cpython.list cimport PyList_GET_SIZE
from cpython.dict cimport PyDict_Items
from cpython.ref cimport Py_INCREF
from cpython.exc cimport PyErr_CheckSignals
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.string cimport memcpy
from libc.stdint cimport uintptr_t


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct tm:
        int tm_year
    time_t time(time_t *t)
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec *tp)
    int CLOCK_REALTIME
    tm *localtime_r(const time_t *timep, tm *result)


cdef inline time_t _wall_seconds() noexcept:
    # fedmsg sends int(time.time()).  time(NULL) reads the coarse clock, which
    # lags CLOCK_REALTIME by up to a scheduler tick and so can still give the
    # previous second just after a second starts.  And time.time() is the
    # clock's nanoseconds as a double, which rounds up to the next second in
    # the last ~120 ns of one (a double near 1.8e9 resolves 2**-22 s): the
    # same conversion is made here, so the two never disagree.
    cdef timespec now

    clock_gettime(CLOCK_REALTIME, &now)
    return <time_t>((<double>(<long long>now.tv_sec * 1000000000LL + now.tv_nsec)) / 1e9)


cdef extern from "Python.h":
    PyObject *PyEval_GetGlobals()


include "_libzmq.pxi"
include "_frames.pxi"


# ---------------------------------------------------------------------------
# JSON.
#
# Plain bodies (only exact dicts with str keys, lists, tuples, str, ints
# within 64 bits, bools, None and finite floats: nearly every real one) are
# written by _json_writer.h straight into a buffer, in the one walk that also
# checks the types.  (Checking first and then encoding with orjson walked
# every body twice and made a bytes object per message: together more than
# the rest of a publish.)
#
# Any other body is first copied into plain values by walking it as fedmsg's
# encoder walks it (_plain_copy: same items, same order, every hook called
# once, the same errors), holding every item by a strong reference while
# hook code runs: a hook that changes a container being walked cannot pull
# an item out from under us (orjson, which this path used to call with the
# hook, crashed then).  The copy is then written by the writer, or by
# fedmsg's own encoder where only it writes the value as fedmsg does (NaN
# and infinities, integers beyond 64 bits, lone surrogates, nesting deeper
# than WRITER_DEPTH).
#
# Keys are not sorted: fedmsg sorts them, but no subscriber can tell once the
# JSON is decoded, and sorting costs a sixth of the encoding.  What is signed
# is still encoded canonically (crypto.py).

cdef extern from "_json_writer.h":
    """
    /* The one buffer every body is written into, under the GIL. */
    static ffm_buffer ffm_scratch;
    """
    ctypedef struct ffm_buffer:
        char *data
        size_t size
        size_t capacity
    ffm_buffer ffm_scratch
    int FFM_WROTE
    int ffm_reserve(ffm_buffer *buf, size_t extra) except -1
    int ffm_write_value(ffm_buffer *buf, object obj, int depth) except -1
    void ffm_buffer_release(ffm_buffer *buf) noexcept
    int ffm_check_dict_layout() except -1

#: The scratch buffer grows to the largest body written; beyond this it is
#: given back after each message, so that one huge body does not pin memory.
DEF SCRATCH_KEPT = 1 << 20
#: The writer leaves nesting deeper than this to the general path (whose
#: limit is Python's recursion limit, as for fedmsg's encoder).
DEF WRITER_DEPTH = 200

#: Whether dicts are walked through CPython's entry array (see _json_writer.h).
DIRECT_DICT_WALK = ffm_check_dict_layout() == 1


cdef inline void _trim_scratch() noexcept:
    if ffm_scratch.capacity > SCRATCH_KEPT:
        ffm_buffer_release(&ffm_scratch)


def _stdlib_default(obj):
    # The stdlib encoder handles builtin subclasses itself; only fedmsg's
    # extra types reach here.
    if hasattr(obj, "__json__"):
        return obj.__json__()
    if isinstance(obj, (_datetime.datetime, _datetime.date)):
        return _pytime.mktime(obj.timetuple())
    if isinstance(obj, _pytime.struct_time):
        return _pytime.mktime(obj)
    if isinstance(obj, set):
        return list(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


#: fedmsg's canonical encoder: sorted keys, no spaces, non-ASCII escaped.
canonical_encoder = _stdjson.JSONEncoder(
    sort_keys=True, separators=(",", ":"), default=_stdlib_default)
cdef object _canonical_encode = canonical_encoder.encode


ctypedef object (*_copy_fn)(object, set)

cdef extern from *:
    """
    typedef PyObject *(*ffm_copy_fn)(PyObject *, PyObject *);

    /* One level of _plain_copy, for a container or an object handed to the
       hook: refuses a cycle as fedmsg's encoder does, counts the level
       against Python's recursion limit, and undoes both on the way out,
       error or not.  This is C because a Cython `finally` would normalise a
       pending RecursionError at every level on the way up, with no
       recursion budget left to do it in, and lose the interpreter's count. */
    static PyObject *ffm_copy_level(PyObject *obj, PyObject *markers, ffm_copy_fn copy)
    {
        PyObject *marker, *result, *type, *value, *traceback;
        int seen;

        marker = PyLong_FromVoidPtr(obj);
        if (marker == NULL)
            return NULL;
        seen = PySet_Contains(markers, marker);
        if (seen != 0) {
            if (seen > 0)
                PyErr_SetString(PyExc_ValueError, "Circular reference detected");
            Py_DECREF(marker);
            return NULL;
        }
        /* Nonzero, not -1, when it raises. */
        if (Py_EnterRecursiveCall(" while encoding a JSON object")) {
            Py_DECREF(marker);
            return NULL;
        }
        if (PySet_Add(markers, marker) < 0) {
            Py_LeaveRecursiveCall();
            Py_DECREF(marker);
            return NULL;
        }
        result = copy(obj, markers);
        PyErr_Fetch(&type, &value, &traceback);
        if (PySet_Discard(markers, marker) < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, traceback);
        Py_LeaveRecursiveCall();
        Py_DECREF(marker);
        return result;
    }
    """
    object ffm_copy_level(object obj, set markers, _copy_fn copy)
    Py_ssize_t PyDict_GET_SIZE(object dict)


cdef object _plain_copy(obj, set markers):
    """``obj`` as plain JSON values, read the way fedmsg's encoder reads it.

    fedmsg's encoder is the stdlib's C encoder with sort_keys and fedmsg's
    default hook; this walks a body as it does, step for step: a dict's
    items taken once and sorted, keys converted by its rules, a list read
    up to its current length, a subclass of list or tuple through its own
    iterator, subclasses of the scalar types as their raw value, everything
    else through the hook; cycles refused with its ValueError, nesting past
    the recursion limit with its RecursionError.  So every hook runs once,
    in fedmsg's order, and sees the same changes made by the ones before.
    Each item is held by a strong reference while any code runs: a hook
    that changes a container being walked cannot pull an item out from
    under us.  The result holds only exact dicts with str keys, lists, str,
    int, float, bool and None.
    """
    if obj is None or obj is True or obj is False:
        return obj
    if isinstance(obj, str):
        return obj if type(obj) is str else str.__str__(obj)
    if isinstance(obj, int):
        return obj if type(obj) is int else int.__int__(obj)
    if isinstance(obj, float):
        return obj if type(obj) is float else float.__float__(obj)
    return ffm_copy_level(obj, markers, _plain_copy_level)


cdef object _plain_copy_level(obj, set markers):
    # Inside ffm_copy_level: a container, or what the hook makes of obj.
    if isinstance(obj, (list, tuple)):
        return _plain_copy_items(obj, markers)
    if isinstance(obj, dict):
        return _plain_copy_object(obj, markers)
    return _plain_copy(_stdlib_default(obj), markers)


cdef list _plain_copy_items(obj, set markers):
    cdef list copied = []
    cdef Py_ssize_t index = 0
    cdef object items

    if type(obj) is list:
        # The list itself, its length read again before each item, as the
        # encoder reads it (a hook that shortens it ends it there).
        while index < PyList_GET_SIZE(obj):
            copied.append(_plain_copy((<list>obj)[index], markers))
            index += 1
        return copied
    # A tuple as it is; a subclass of list or tuple through its iterator
    # (never its __len__).
    items = obj if type(obj) is tuple else list(iter(obj))
    for value in items:
        copied.append(_plain_copy(value, markers))
    return copied


cdef dict _plain_copy_object(obj, set markers):
    cdef dict copied = {}
    cdef list items
    cdef object listed
    cdef str key

    if PyDict_GET_SIZE(obj) == 0:
        return copied
    # The items as the encoder takes them (PyMapping_Items): a subclass's own
    # items(), a list it returns used as it is, then sorted in place.
    if type(obj) is dict:
        items = PyDict_Items(obj)
    else:
        listed = obj.items()
        items = listed if type(listed) is list else list(iter(listed))
    items.sort()
    for item in items:
        # Each a tuple of two, read from its storage (not its __iter__), the
        # key checked before the value is walked, as the encoder does.
        if not isinstance(item, tuple) or len(<tuple>item) != 2:
            raise ValueError("items must return 2-tuples")
        key = _plain_key((<tuple>item)[0])
        copied[key] = _plain_copy((<tuple>item)[1], markers)
    return copied


cdef str _plain_key(key):
    # The encoder's rules for keys, in its order.
    if isinstance(key, str):
        return key if type(key) is str else str.__str__(key)
    if isinstance(key, float):
        if key != key:
            return "NaN"
        if key == _INFINITY or key == -_INFINITY:
            return "Infinity" if key > 0 else "-Infinity"
        return float.__repr__(key)
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError("keys must be str, int, float, bool or None, not %s" % type(key).__name__)


cdef object _INFINITY = float("inf")


cpdef bytes encode_json(obj):
    """Encode ``obj`` to JSON bytes that decode to what fedmsg would send.

    Raises fastfedmsg.errors.EncodeError (a TypeError) for a type JSON cannot
    carry, fastfedmsg.errors.InvalidMessageError (a ValueError) for a cycle
    and NestingTooDeepError (also a RecursionError) for nesting past the
    recursion limit, where fedmsg raises TypeError, ValueError and
    RecursionError.
    """
    cdef object encoded = _written(obj)

    return <bytes>encoded if encoded is not None else _encode_general(obj)


cdef object _written(obj):
    # ``obj`` as the writer writes it, as bytes, or None where it gives up.
    cdef bytes encoded

    ffm_scratch.size = 0
    if ffm_write_value(&ffm_scratch, obj, WRITER_DEPTH) != FFM_WROTE:
        return None
    encoded = PyBytes_FromStringAndSize(ffm_scratch.data, ffm_scratch.size)
    _trim_scratch()
    return encoded


cdef bytes _encode_general(obj):
    # A body the writer gave up on: see above.  May run the body's own code.
    cdef object encoded

    try:
        obj = _plain_copy(obj, set())
    except (TypeError, ValueError, RecursionError) as exc:
        raise _refusal(exc) from exc
    encoded = _written(obj)
    if encoded is not None:
        return <bytes>encoded
    # What only fedmsg's encoder writes as fedmsg does (NaN, integers beyond
    # 64 bits, lone surrogates, nesting past the writer's limit): the copy,
    # so that no hook runs twice.
    return _encode_stdlib(obj)


cdef bytes _encode_stdlib(obj):
    try:
        return _canonical_encode(obj).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise _refusal(exc) from exc


cdef object _refusal(exc):
    # The error publish raises for what fedmsg's encoder raised.
    if isinstance(exc, TypeError):
        return _errors.EncodeError(
            "cannot encode the message body as JSON: %s; a body may hold dicts with "
            "string keys, lists, strings, numbers, booleans, None, datetimes, sets "
            "and objects with a __json__() method" % (exc,))
    refused = _errors.NestingTooDeepError if isinstance(exc, RecursionError) \
        else _errors.InvalidMessageError
    return refused("cannot encode the message body as JSON: %s; break the cycle or reduce "
                   "the nesting before publishing" % (exc,))


# ---------------------------------------------------------------------------
# Per-process facts: the login name and random bytes for UUIDs.

cdef object _username = None
cdef bint _username_known = False


def username():
    """The login name, looked up once per process.

    fedmsg calls getpass.getuser() on every message and fails where the uid
    has no name (a container run with --user 12345); the numeric uid is sent
    then instead.
    """
    global _username, _username_known

    if not _username_known:
        try:
            _username = _getpass.getuser()
        except (KeyError, OSError, ImportError):
            _username = str(os.getuid())
        _username_known = True
    return _username


DEF RANDOM_BUFFER = 4096
cdef bytes _random = b""
cdef Py_ssize_t _random_pos = RANDOM_BUFFER


#: Bumped in every child of os.fork().  A Publisher remembers the value it
#: was made under; a different value means it was inherited from the parent,
#: whose ZeroMQ sockets a child must never touch.  Comparing two integers
#: costs nothing per message, where a getpid() would be a system call.
cdef unsigned long _fork_generation = 0


def _after_fork_in_child():
    # A child must never reuse the parent's buffered bytes: its UUIDs would
    # repeat the parent's.
    global _random, _random_pos, _fork_generation, _username_known
    _random = b""
    _random_pos = RANDOM_BUFFER
    _fork_generation += 1
    thread_publishers_changed()
    # A child may change its uid before it publishes; look the name up again.
    _username_known = False


os.register_at_fork(after_in_child=_after_fork_in_child)


def fork_generation():
    """How many os.fork() calls separate this process from the one that
    imported fastfedmsg (0 there, 1 in its children, ...)."""
    return _fork_generation

cdef extern from *:
    """
    /* "00" .. "ff": two hex digits per byte, written with one 16-bit copy. */
    static char ffm_hex_pairs[512];

    static void ffm_init_hex_pairs(void)
    {
        static const char digits[] = "0123456789abcdef";
        int b;

        for (b = 0; b < 256; b++) {
            ffm_hex_pairs[2 * b] = digits[b >> 4];
            ffm_hex_pairs[2 * b + 1] = digits[b & 15];
        }
    }

    /* 36 characters of an RFC 4122 version-4 UUID from 16 random bytes. */
    static void ffm_format_uuid4(char *dst, const unsigned char *src)
    {
        unsigned char bytes[16];
        int k;

        memcpy(bytes, src, 16);
        bytes[6] = (bytes[6] & 0x0F) | 0x40;   /* version 4 */
        bytes[8] = (bytes[8] & 0x3F) | 0x80;   /* RFC 4122 variant */
        for (k = 0; k < 16; k++) {
            if (k == 4 || k == 6 || k == 8 || k == 10)
                *dst++ = '-';
            memcpy(dst, ffm_hex_pairs + 2 * bytes[k], 2);
            dst += 2;
        }
    }
    """
    void ffm_init_hex_pairs() noexcept
    void ffm_format_uuid4(char *dst, const unsigned char *src) noexcept


ffm_init_hex_pairs()


cdef void _write_uuid4(char *dst) except *:
    """Write 36 characters of a random RFC 4122 version-4 UUID into dst."""
    global _random, _random_pos

    if _random_pos + 16 > RANDOM_BUFFER:
        _random = os.urandom(RANDOM_BUFFER)
        _random_pos = 0
    ffm_format_uuid4(dst, <const unsigned char *>PyBytes_AS_STRING(_random) + _random_pos)
    _random_pos += 16


def uuid4_text():
    """A random version-4 UUID as text, from the buffered random source."""
    cdef char buf[36]

    _write_uuid4(buf)
    return buf[:36].decode("ascii")


cdef extern from "_json_writer.h":
    int _write_uint "ffm_write_uint" (char *dst, unsigned long long value) noexcept
    int _uint_len "ffm_uint_length" (unsigned long long value) noexcept


# ---------------------------------------------------------------------------
# Module-name guessing.

cdef dict _modname_cache = {}
_OWN_PACKAGES = frozenset(["fastfedmsg", "fedmsg"])


cdef str _top_level(object module_name):
    cdef object top = _modname_cache.get(module_name)

    if top is None:
        top = str(module_name).split(".")[0]
        if len(_modname_cache) > 10000:
            _modname_cache.clear()
        _modname_cache[module_name] = top
    return top


cpdef str guess_modname(default="fedmsg"):
    """The top-level package of the Python code that called into fastfedmsg.

    Looks at the caller's globals directly; only when the caller is
    fastfedmsg's own Python code does it step further out.
    """
    cdef PyObject *globals_ = PyEval_GetGlobals()
    cdef object name
    cdef str top

    if globals_ != NULL:
        name = (<dict>globals_).get("__name__")
        if name is not None:
            top = _top_level(name)
            if top not in _OWN_PACKAGES:
                return top

    import sys
    frame = sys._getframe(0)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if name is not None:
            top = _top_level(name)
            if top not in _OWN_PACKAGES:
                return top
        frame = frame.f_back
    return default


cdef extern from "_json_writer.h":
    """
    /* The "topic", "msg" and "modname" of a publish_many item (borrowed, NULL
       when absent): 1, found by walking its entries and comparing key
       pointers with the interned names (the keys of a dict display or of
       dict(topic=...) are those very objects); 0 when the item has to be
       read with dict.get instead (another layout, or other keys). */
    static int ffm_item_fields(PyObject *item, PyObject *topic, PyObject *msg,
                               PyObject *modname, PyObject **fields)
    {
    #ifdef FFM_DICT_LAYOUT
        Py_ssize_t count, k;
        ffm_dict_entry *entries = ffm_dict_entries(item, &count);
        PyObject *key;

        fields[0] = fields[1] = fields[2] = NULL;
        if (entries == NULL || count > 8)
            return 0;
        for (k = 0; k < count; k++) {
            if (entries[k].value == NULL)
                continue;
            key = entries[k].key;
            if (key == topic)
                fields[0] = entries[k].value;
            else if (key == msg)
                fields[1] = entries[k].value;
            else if (key == modname)
                fields[2] = entries[k].value;
            else
                return 0;
        }
        return 1;
    #else
        (void)item; (void)topic; (void)msg; (void)modname; (void)fields;
        return 0;
    #endif
    }
    """
    bint ffm_item_fields(PyObject *item, PyObject *topic, PyObject *msg, PyObject *modname,
                         PyObject **fields) noexcept

cdef str _KEY_TOPIC = _sys.intern("topic")
cdef str _KEY_MSG = _sys.intern("msg")
cdef str _KEY_MODNAME = _sys.intern("modname")


# ---------------------------------------------------------------------------
# The publisher.

DEF TOPIC_CACHE_LIMIT = 8192
DEF PINNED_TOPIC_BYTES = 4 << 20
DEF ZMQ_EINTR = 4
DEF SUBSCRIPTIONS_PER_TICK = 1000
#: Room before the body for {"i":N,"msg": (N has at most 20 digits).
DEF ENVELOPE_HEAD_ROOM = 32
#: What _write_envelope and _prepare return for a body that would run code.
DEF RUNS_CODE = -2
#: publish_many builds this many messages, then sends them in one burst.
DEF MANY_CHUNK = 64

# What publish does when a subscriber's queue is at the high-water mark.
DEF ON_FULL_DROP = 0
DEF ON_FULL_BLOCK = 1
DEF ON_FULL_RAISE = 2
ON_FULL_MODES = ("drop", "block", "raise")

# The pointers in _libzmq.pxi are declared as needing the GIL; the blocking
# send below runs with the GIL released, so it calls them through nogil types
# of the same C signature.
ctypedef int (*msg_send_nogil)(ffm_msg_t *, void *, int) noexcept nogil
ctypedef int (*errno_nogil)() noexcept nogil


#: Topic frames sent without a copy, as constant libzmq frames (no malloc,
#: no memcpy).  libzmq may read such a frame after the publisher that sent
#: it is gone (a closed socket lingers, even at interpreter exit), so each
#: one is kept for the life of the process: up to PINNED_TOPIC_BYTES of
#: distinct topics, after which new topics are copied into each message.
cdef dict _pinned_topics = {}
cdef Py_ssize_t _pinned_bytes = 0


cdef bytes _pinned_topic(bytes frame0):
    """The process-lifetime copy of ``frame0``, or None once the budget is spent."""
    global _pinned_bytes
    cdef object pinned = _pinned_topics.get(frame0)

    if pinned is not None:
        return <bytes>pinned
    if _pinned_bytes + PyBytes_GET_SIZE(frame0) > PINNED_TOPIC_BYTES:
        return None
    # The extra reference is never released, so the frame outlives even the
    # clearing of this module at interpreter exit.
    Py_INCREF(frame0)
    _pinned_topics[frame0] = frame0
    _pinned_bytes += PyBytes_GET_SIZE(frame0)
    return frame0


cdef list _frame_pool_stats():
    # Per block size: [size, blocks malloc'd so far, blocks idle now].
    cdef int cls

    return [[1 << (cls + FFM_SMALLEST_SHIFT), ffm_made[cls], ffm_idle_blocks(cls)]
            for cls in range(FFM_CLASSES)]


def frame_memory():
    """Where the hot path's frame memory is, for tests and diagnostics.

    ``pinned_topics`` and ``pinned_topic_bytes``: topic frames kept for the
    life of the process (at most ``pinned_topic_limit`` bytes); ``blocks``:
    per block size, ``[size, blocks allocated so far, blocks idle now]``
    (idle blocks of one size are bounded by about ``idle_limit`` bytes).
    """
    return {
        "pinned_topics": len(_pinned_topics),
        "pinned_topic_bytes": _pinned_bytes,
        "pinned_topic_limit": PINNED_TOPIC_BYTES,
        "blocks": _frame_pool_stats(),
        "idle_limit": FFM_IDLE_BYTES,
    }


@cython.final
cdef class Publisher:
    """Builds fedmsg envelopes and sends them on one PUB or XPUB socket.

    ``socket`` is a pyzmq socket owned by the caller (it must outlive this
    object; call close() before closing it), or None for a publisher that only
    builds frames (used by the STOMP transport).

    ``on_full`` says what a publish does when a subscriber's queue is at the
    high-water mark; it only applies to an XPUB socket with ZMQ_XPUB_NODROP
    set (fastfedmsg.context does that), which refuses such a message whole
    instead of dropping it silently: 'drop' counts it in ``dropped`` and
    goes on (fedmsg's behaviour, made visible), 'block' waits for room up to
    the socket's SNDTIMEO (``send_timeout`` ms, -1 for ever), then raises
    HighWaterMarkError, 'raise' raises at once.  A refused message uses no
    ``i``.  ``max_message_size`` (bytes of both frames, None for no limit)
    refuses larger messages with MessageTooLargeError before anything is sent.
    """
    cdef object _socket
    cdef void *_handle
    cdef readonly str topic_prefix
    cdef readonly str environment
    cdef readonly object username
    cdef unsigned long long _i
    cdef dict _topics
    cdef Py_ssize_t _topic_count
    cdef time_t _last_second
    cdef char _year[8]
    cdef int _year_len
    cdef public unsigned long long sent
    cdef readonly unsigned long long dropped
    cdef int _on_full
    cdef readonly int send_timeout
    cdef Py_ssize_t _max_size
    cdef unsigned long _generation
    cdef bint _reads_subscriptions

    def __cinit__(self, socket, str topic_prefix, str environment, username=None,
                  on_full="drop", int send_timeout=-1, max_message_size=None):
        if on_full not in ON_FULL_MODES:
            raise ValueError("on_full must be one of %s, found %r"
                             % (", ".join(ON_FULL_MODES), on_full))
        if max_message_size is not None and max_message_size < 1:
            raise ValueError("max_message_size must be None or a number of bytes >= 1, "
                             "found %r" % (max_message_size,))
        self._socket = socket
        self._handle = NULL if socket is None else <void *><uintptr_t>socket.underlying
        self.topic_prefix = topic_prefix
        self.environment = environment
        self.username = username
        self._i = 0
        self.sent = 0
        self.dropped = 0
        self._topics = {}
        self._topic_count = 0
        self._last_second = -1
        self._year_len = 0
        self._on_full = ON_FULL_MODES.index(on_full)
        self.send_timeout = send_timeout
        self._max_size = PY_SSIZE_T_MAX if max_message_size is None else max_message_size
        self._generation = _fork_generation
        # An XPUB socket queues every new subscription for its owner to read;
        # nobody else reads them, so the publisher drops them once a second.
        self._reads_subscriptions = socket is not None and socket.type == zmq.XPUB

    property i:
        """The counter of the last envelope built (fedmsg's ``i``)."""
        def __get__(self):
            return self._i

    property closed:
        def __get__(self):
            return self._handle == NULL

    property on_full:
        """'drop', 'block' or 'raise': see the class docstring."""
        def __get__(self):
            return ON_FULL_MODES[self._on_full]

    property max_message_size:
        """The largest message sent, in bytes of both frames; None: no limit."""
        def __get__(self):
            return None if self._max_size == PY_SSIZE_T_MAX else self._max_size

    def __dealloc__(self):
        # A thread may still hold a borrowed pointer to this publisher.
        ffm_forget_thread_publishers()

    def stats(self):
        """{'sent': messages the socket accepted, 'dropped': messages refused
        at the high-water mark and dropped (on_full='drop')}."""
        return {"sent": self.sent, "dropped": self.dropped}

    def close(self):
        """Forget the socket; publishing afterwards raises."""
        self._handle = NULL
        self._socket = None

    # -- topics ------------------------------------------------------------

    cdef tuple _topic_entry(self, topic, modname):
        # Two dict lookups (modname, then topic) on strings whose hashes
        # are cached: cheaper than building and hashing a tuple key.
        cdef object by_topic, entry

        if type(topic) is not str or type(modname) is not str:
            # Refuse what is not text before it meets the cache, where an
            # unhashable value would raise a less helpful TypeError.
            _as_text(topic, "topic")
            _as_text(modname, "modname")
        by_topic = self._topics.get(modname)
        if by_topic is not None:
            entry = (<dict>by_topic).get(topic)
            if entry is not None:
                return <tuple>entry
        entry = self._make_topic_entry(topic, modname)
        if self._topic_count >= TOPIC_CACHE_LIMIT:
            self._topics.clear()
            self._topic_count = 0
            by_topic = None
        if by_topic is None:
            by_topic = self._topics[modname] = {}
        (<dict>by_topic)[topic] = entry
        self._topic_count += 1
        return <tuple>entry

    cdef tuple _make_topic_entry(self, topic, modname):
        # (full topic, frame 0, the envelope's tail, whether frame 0 is pinned)
        cdef str full
        cdef bytes frame0, tail, pinned

        topic = _as_text(topic, "topic")
        modname = _as_text(modname, "modname")
        full = modname + "." + topic
        if full[:len(self.topic_prefix)] != self.topic_prefix:
            full = self.topic_prefix + "." + self.environment + "." + full
        if "\x00" in full:
            raise _errors.InvalidTopicError(
                "topic %r contains a NUL character; ZeroMQ subscribers match topics as "
                "byte prefixes, so remove it" % (full,))
        try:
            frame0 = full.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _errors.InvalidTopicError(
                "topic %r cannot be encoded as UTF-8 (%s); pass text without lone "
                "surrogates" % (full, exc.reason)) from exc
        tail = b',"topic":' + encode_json(full) + b',"username":' + encode_json(self.username) + b'}'
        pinned = _pinned_topic(frame0)
        if pinned is not None:
            return (full, pinned, tail, True)
        return (full, frame0, tail, False)

    def full_topic(self, topic=None, modname=None):
        """The full topic fedmsg would publish ``topic`` from ``modname`` on."""
        return self._topic_entry(topic or "unspecified", modname or guess_modname())[0]

    # -- envelopes ---------------------------------------------------------

    cdef inline void _tick(self, time_t now):
        cdef tm parts

        if now != self._last_second:
            localtime_r(&now, &parts)
            self._year_len = _write_uint(self._year, <unsigned long long>(parts.tm_year + 1900))
            self._last_second = now
            if (self._reads_subscriptions and self._handle != NULL
                    and self._generation == _fork_generation):
                self._drop_subscriptions()

    cdef void _drop_subscriptions(self) noexcept:
        # XPUB hands every new subscription (and every last unsubscription) to
        # its owner; unread, they would pile up for as long as subscribers
        # come and go.  Reading them never blocks and never affects sending.
        cdef ffm_msg_t frame
        cdef int k

        for k in range(SUBSCRIPTIONS_PER_TICK):
            _msg_init(&frame)
            if _msg_recv(&frame, self._handle, ZMQ_DONTWAIT) < 0:
                _msg_close(&frame)
                return
            _msg_close(&frame)

    cdef Py_ssize_t _write_envelope(self, msg, tuple entry, time_t now,
                                    const char *uuid_text, bint may_run_code) except -1:
        """Write the envelope of ``msg``, numbered ``self._i + 1``, into the
        scratch buffer; return the offset where it starts (it ends at the
        buffer's size), or RUNS_CODE, writing nothing, when the body needs
        the general path (which may run the body's own code) and
        ``may_run_code`` is false.

        The body is written first, ENVELOPE_HEAD_ROOM bytes in, then what
        follows it, then ``{"i":N,"msg":`` just before it.  N is read only
        then: a hook in the body may itself have published.  No Python code
        runs from the body's last write to the caller's copy out of the
        buffer, so nothing else can write into it.
        """
        cdef bytes body, tail = <bytes>entry[2]
        cdef unsigned long long i
        cdef Py_ssize_t n, start
        cdef char *out

        ffm_scratch.size = 0
        ffm_reserve(&ffm_scratch, ENVELOPE_HEAD_ROOM)
        ffm_scratch.size = ENVELOPE_HEAD_ROOM
        if ffm_write_value(&ffm_scratch, msg, WRITER_DEPTH) != FFM_WROTE:
            if not may_run_code:
                return RUNS_CODE
            # The general path may run Python code (__json__, say), which
            # may itself publish: the buffer is only written again after it.
            body = _encode_general(msg)
            n = PyBytes_GET_SIZE(body)
            ffm_scratch.size = ENVELOPE_HEAD_ROOM
            ffm_reserve(&ffm_scratch, n)
            memcpy(ffm_scratch.data + ENVELOPE_HEAD_ROOM, PyBytes_AS_STRING(body), n)
            ffm_scratch.size += n

        # ,"msg_id":"YEAR-UUID","timestamp":T then the cached topic and username
        ffm_reserve(&ffm_scratch, 11 + self._year_len + 1 + 36 + 14 + 20 + PyBytes_GET_SIZE(tail))
        out = ffm_scratch.data + ffm_scratch.size
        memcpy(out, b',"msg_id":"', 11)
        out += 11
        memcpy(out, self._year, self._year_len)
        out += self._year_len
        out[0] = b'-'
        out += 1
        memcpy(out, uuid_text, 36)
        out += 36
        memcpy(out, b'","timestamp":', 14)
        out += 14
        out += _write_uint(out, <unsigned long long>now)
        memcpy(out, PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail))
        out += PyBytes_GET_SIZE(tail)
        ffm_scratch.size = out - ffm_scratch.data

        i = self._i + 1
        start = ENVELOPE_HEAD_ROOM - (5 + _uint_len(i) + 7)
        out = ffm_scratch.data + start
        memcpy(out, b'{"i":', 5)
        out += 5
        out += _write_uint(out, i)
        memcpy(out, b',"msg":', 7)
        return start

    cdef dict _envelope_dict(self, tuple entry, msg, unsigned long long i, time_t now):
        cdef char uuid_text[36]

        _write_uuid4(uuid_text)
        return {
            "topic": entry[0],
            "msg": msg,
            "timestamp": int(now),
            "msg_id": self._year[:self._year_len].decode("ascii") + "-" + uuid_text[:36].decode("ascii"),
            "i": i,
            "username": self.username,
        }

    cpdef tuple build(self, topic=None, msg=None, modname=None, pre_fire_hook=None):
        """Build one envelope: returns (frame0 bytes, envelope dict or None, frame1 bytes).

        The dict is only built when a hook needs it.  Nothing is counted
        until the body has been encoded.
        """
        cdef tuple entry
        cdef bytes frame1
        cdef time_t now
        cdef dict envelope
        cdef Py_ssize_t start
        cdef unsigned long long counted
        cdef char uuid_text[36]

        if not topic:
            topic = "unspecified"
        if not msg:
            msg = {}
        if not modname:
            modname = guess_modname()
        entry = self._topic_entry(topic, modname)

        now = _wall_seconds()
        self._tick(now)
        if pre_fire_hook is not None:
            # As fedmsg does: the envelope takes its i before any hook runs,
            # so that a hook (or a __json__) that publishes gets the next one.
            self._i += 1
            counted = self._i
            try:
                envelope = self._envelope_dict(entry, msg, counted, now)
                pre_fire_hook(envelope)
                frame1 = encode_json(envelope)
            except BaseException:
                if self._i == counted:
                    self._i -= 1    # refused: its i is given back
                raise
            return (<bytes>entry[1], envelope, frame1)

        _write_uuid4(uuid_text)
        start = self._write_envelope(msg, entry, now, uuid_text, True)
        frame1 = PyBytes_FromStringAndSize(ffm_scratch.data + start, ffm_scratch.size - start)
        _trim_scratch()
        self._i += 1
        return (<bytes>entry[1], None, frame1)

    # -- sending -----------------------------------------------------------

    cdef int _check_open(self) except -1:
        if self._handle == NULL or self._generation != _fork_generation:
            self._refuse_closed()
        return 0

    cdef int _refuse_closed(self) except -1:
        if self._handle == NULL:
            raise _errors.ClosedError(
                "this fastfedmsg context has been destroyed; call fastfedmsg.init() "
                "again (or just publish) to get a new one")
        raise _errors.ForkedContextError(
            "this publisher was made before os.fork() and belongs to the parent "
            "process; the child (pid %d) must not use its socket. Publish with "
            "fastfedmsg.publish(), which makes the child a fresh context, or call "
            "fastfedmsg.destroy() and fastfedmsg.init() in the child" % os.getpid())

    cdef int _refuse_size(self, Py_ssize_t size, tuple entry) except -1:
        raise _errors.MessageTooLargeError(
            "the message on %r would be %d bytes, more than max_message_size=%d; "
            "nothing was sent. Send a smaller body (a link to the data, say) or "
            "raise max_message_size" % (entry[0], size, self._max_size),
            size=size, limit=self._max_size)

    cdef int _queue_full(self, ffm_msg_t *part) except -1:
        """Frame 0 was refused: returns 1 once it is sent, 0 if the message
        was dropped (counted), or raises; ``part`` is closed unless sent.

        With ZMQ_XPUB_NODROP, a subscriber's queue at the high-water mark
        refuses the first frame with EAGAIN and nothing of the message is
        queued (libzmq queues a multipart message whole or not at all), so
        the message can be counted, waited for or reported.
        """
        cdef int err = _zmq_errno()
        cdef int rc = -1
        cdef void *handle = self._handle
        cdef msg_send_nogil send_nogil = <msg_send_nogil><void *>_msg_send
        cdef errno_nogil errno_of = <errno_nogil><void *>_zmq_errno

        if err == ZMQ_EAGAIN and self._on_full == ON_FULL_DROP:
            _msg_close(part)
            self.dropped += 1
            return 0

        while err == ZMQ_EAGAIN and self._on_full == ON_FULL_BLOCK:
            # A blocking send waits until a subscriber reads, up to the
            # socket's SNDTIMEO; the GIL is released meanwhile.
            with nogil:
                rc = send_nogil(part, handle, ZMQ_SNDMORE)
                err = 0 if rc >= 0 else errno_of()
            if rc >= 0:
                return 1
            if err == ZMQ_EINTR:
                if PyErr_CheckSignals() < 0:
                    _msg_close(part)
                    self._forget_last()
                    return -1
                err = ZMQ_EAGAIN
                continue
            if err == ZMQ_EAGAIN:
                break

        _msg_close(part)
        if err != ZMQ_EAGAIN:
            raise zmq.ZMQError(err)
        self._forget_last()
        waited = self.send_timeout if self._on_full == ON_FULL_BLOCK else 0
        raise _errors.HighWaterMarkError(
            "a subscriber's queue is full (high_water_mark=%s messages)%s, so the message "
            "was not sent (on_full=%r). A subscriber is not keeping up: publish again "
            "later, raise high_water_mark or send_timeout, or set on_full='drop' to drop "
            "and count such messages" % (
                self._socket.getsockopt(zmq.SNDHWM),
                " and stayed full for send_timeout=%d ms" % waited if waited else "",
                self.on_full),
            timeout_ms=waited)

    cdef inline void _forget_last(self) noexcept:
        # A refused message gives its ``i`` back: subscribers see no gap.
        if self._i > 0:
            self._i -= 1

    cdef int _send_frames(self, bytes frame0, bytes frame1) except -1:
        cdef ffm_msg_t head, tail
        cdef Py_ssize_t n0 = PyBytes_GET_SIZE(frame0), n1 = PyBytes_GET_SIZE(frame1)
        cdef char *data

        if n0 + n1 > self._max_size:
            self._forget_last()
            self._refuse_size(n0 + n1, (frame0.decode("utf-8", "replace"),))
        data = _frame_init(&head, n0)
        if data == NULL:
            self._forget_last()
            _no_frame_memory(n0)
        memcpy(data, PyBytes_AS_STRING(frame0), n0)
        data = _frame_init(&tail, n1)
        if data == NULL:
            _msg_close(&head)
            self._forget_last()
            _no_frame_memory(n1)
        memcpy(data, PyBytes_AS_STRING(frame1), n1)
        return self._send_pair(&head, &tail)

    cdef int _send_pair(self, ffm_msg_t *head, ffm_msg_t *tail) except -1:
        # Both frames are made before either is sent, so a message is never
        # half-sent; each is sent or closed here.
        cdef int sent

        if self._handle == NULL or self._generation != _fork_generation:
            # Closed while its body was built: a hook in it may destroy().
            _msg_close(head)
            _msg_close(tail)
            self._forget_last()
            self._refuse_closed()

        if _msg_send(head, self._handle, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0:
            try:
                sent = self._queue_full(head)
            except BaseException:
                _msg_close(tail)
                raise
            if not sent:
                _msg_close(tail)
                return 0
        if _msg_send(tail, self._handle, ZMQ_DONTWAIT) < 0:
            _msg_close(tail)
            _raise_zmq()
        self.sent += 1
        return 0

    cdef int _publish(self, topic, msg, modname, pre_fire_hook) except -1:
        # Sends never block here: at the high-water mark the first frame is
        # refused (ZMQ_XPUB_NODROP) and _queue_full decides; so the GIL is
        # kept (releasing it would cost more than the send).
        cdef tuple built
        cdef ffm_msg_t head, tail

        self._check_open()
        if pre_fire_hook is not None:
            built = self.build(topic, msg, modname, pre_fire_hook)
            return self._send_frames(<bytes>built[0], <bytes>built[2])
        self._prepare(topic, msg, modname, &head, &tail)
        return self._send_pair(&head, &tail)

    cdef int _prepare(self, topic, msg, modname, ffm_msg_t *head, ffm_msg_t *tail,
                      bint may_run_code=True) except -1:
        """Build the next message's two frames in ``head`` and ``tail`` and
        count it; the caller sends or closes both.  On error nothing is
        counted and neither frame is left open.  Returns RUNS_CODE, building
        nothing, for a body that needs code of its own run (a __json__, say)
        when ``may_run_code`` is false."""
        cdef tuple entry
        cdef bytes frame0
        cdef time_t now
        cdef Py_ssize_t n, size, start
        cdef char *data
        cdef char uuid_text[36]

        if not may_run_code and not (type(topic) is str and type(modname) is str
                                     and type(msg) is dict):
            return RUNS_CODE    # testing or reading them may run their own code
        if not topic:
            topic = "unspecified"
        if not msg:
            msg = {}
        entry = self._topic_entry(topic, modname)
        now = _wall_seconds()
        self._tick(now)
        _write_uuid4(uuid_text)
        start = self._write_envelope(msg, entry, now, uuid_text, may_run_code)
        if start == RUNS_CODE:
            return RUNS_CODE

        frame0 = <bytes>entry[1]
        n = PyBytes_GET_SIZE(frame0)
        size = ffm_scratch.size - start
        if n + size > self._max_size:
            _trim_scratch()
            self._refuse_size(n + size, entry)
        if entry[3] is True:
            # A constant frame: libzmq reads the pinned bytes in place.
            if _msg_init_data(head, PyBytes_AS_STRING(frame0), n, NULL, NULL) != 0:
                _no_frame_memory(n)
        else:
            data = _frame_init(head, n)
            if data == NULL:
                _no_frame_memory(n)
            memcpy(data, PyBytes_AS_STRING(frame0), n)
        data = _frame_init(tail, size)
        if data == NULL:
            _msg_close(head)
            _no_frame_memory(size)
        memcpy(data, ffm_scratch.data + start, size)
        _trim_scratch()
        self._i += 1
        return 0

    cdef int _send_chunk(self, ffm_msg_t *heads, ffm_msg_t *tails, Py_ssize_t *ready,
                         Py_ssize_t next_index) except -1:
        """Send the ``*ready`` messages publish_many has built, in order, the
        last of them item ``next_index - 1``; ``*ready`` is 0 afterwards.

        When message k fails, the ones after it are closed unsent and give
        their ``i`` back (its own frames _send_pair closes, and its ``i``
        _queue_full gives back or not), and the error is raised as
        publish_many raises it, for item k.
        """
        cdef Py_ssize_t count = ready[0], k, j
        cdef unsigned long long last_i = self._i, before

        ready[0] = 0    # the frames are this call's now, sent or closed
        for k in range(count):
            before = self._i
            try:
                self._send_pair(&heads[k], &tails[k])
            except BaseException as exc:
                for j in range(k + 1, count):
                    _msg_close(&heads[j])
                    _msg_close(&tails[j])
                self._i = last_i - (count - 1 - k) - (before - self._i)
                raise _many_error(exc, next_index - count + k)
        return 0

    def publish(self, topic=None, msg=None, modname=None, pre_fire_hook=None):
        """Publish one message, as fedmsg.publish does."""
        if not modname:
            modname = guess_modname()
        self._publish(topic, msg, modname, pre_fire_hook)

    def send_frames(self, bytes frame0, bytes frame1):
        """Send two ready frames (used by signing, which must see the envelope)."""
        self._check_open()
        self._send_frames(frame0, frame1)

    def publish_many(self, items, modname=None):
        """Publish every item of ``items`` in one call.

        Each item is a ``(topic, msg)`` pair or a dict with ``topic``, ``msg``
        and optionally ``modname``.  Envelopes, counters and errors are those
        of one publish per item; an item that fails raises
        fastfedmsg.errors.PublishManyError naming its index, after the items
        before it were sent and before any after it (HighWaterMarkError is
        raised as itself, with ``index`` set).

        Items are built MANY_CHUNK at a time and each chunk is then sent in
        one burst: libzmq's I/O thread, woken once for the burst, sends it
        in full TCP batches, where messages that trickle in one by one wake
        it for every few (that wake-up costs more CPU than building a
        message).  The first item of a chunk therefore leaves at most
        MANY_CHUNK builds later than one publish would send it.
        """
        cdef ffm_msg_t heads[MANY_CHUNK]
        cdef ffm_msg_t tails[MANY_CHUNK]
        cdef Py_ssize_t index = 0, ready = 0
        # Another iterable runs its own code to give each item, which may
        # publish too: its items go out one by one, in order.
        cdef Py_ssize_t chunk = MANY_CHUNK if type(items) is list or type(items) is tuple else 1
        cdef object item
        cdef bint preparing = False

        self._check_open()
        if not modname:
            modname = guess_modname()
        try:
            for item in items:
                if ready and type(item) is not tuple and type(item) is not dict:
                    # Reading this item's fields may run its own code.
                    self._send_chunk(heads, tails, &ready, index)
                preparing = True
                if self._prepare_item(item, modname, &heads[ready], &tails[ready],
                                      ready == 0) == RUNS_CODE:
                    # The body runs code of its own (a __json__, say), which
                    # may publish too: what was built before it goes out first.
                    preparing = False
                    self._send_chunk(heads, tails, &ready, index)
                    preparing = True
                    self._prepare_item(item, modname, &heads[0], &tails[0], True)
                preparing = False
                ready += 1
                index += 1
                if ready == chunk:
                    self._send_chunk(heads, tails, &ready, index)
            if ready:
                self._send_chunk(heads, tails, &ready, index)
        except BaseException as exc:
            # The items built before the failure still go out (the first of
            # them that cannot be sent raises instead); a send raises for its
            # own item already, the iterator's own errors pass unchanged.
            if ready:
                self._send_chunk(heads, tails, &ready, index)
            if preparing:
                raise _many_error(exc, index)
            raise
        return index

    cdef int _prepare_item(self, item, modname, ffm_msg_t *head, ffm_msg_t *tail,
                           bint may_run_code) except -1:
        # _prepare for one item of publish_many.
        cdef PyObject *fields[3]

        if type(item) is tuple and len(<tuple>item) == 2:
            topic, msg, item_modname = (<tuple>item)[0], (<tuple>item)[1], modname
        elif type(item) is dict and ffm_item_fields(
                <PyObject *>item, <PyObject *>_KEY_TOPIC, <PyObject *>_KEY_MSG,
                <PyObject *>_KEY_MODNAME, fields):
            topic = <object>fields[0] if fields[0] != NULL else None
            msg = <object>fields[1] if fields[1] != NULL else None
            item_modname = (<object>fields[2] if fields[2] != NULL else None) or modname
        elif isinstance(item, dict):
            topic, msg = (<dict>item).get("topic"), (<dict>item).get("msg")
            item_modname = (<dict>item).get("modname") or modname
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            topic, msg, item_modname = item[0], item[1], modname
        else:
            raise _errors.InvalidMessageError(
                "expected a (topic, msg) pair or a dict with 'topic' and 'msg', "
                "found %s" % (type(item).__name__,))
        return self._prepare(topic, msg, item_modname, head, tail, may_run_code)


cdef object _many_error(exc, Py_ssize_t index):
    # What publish_many raises for a failure at item ``index``.
    if isinstance(exc, _errors.HighWaterMarkError):
        exc.index = index
        return exc
    if isinstance(exc, (TypeError, ValueError)):
        error = _errors.PublishManyError(index, exc)
        error.__cause__ = exc
        return error
    return exc


cdef str _as_text(value, str what):
    if type(value) is str:
        return <str>value
    if isinstance(value, str):
        return str.__str__(value)  # the raw text, as str.join reads it
    if isinstance(value, bytes):
        try:
            return (<bytes>value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _errors.InvalidTopicError(
                "%s %r is not valid UTF-8 (%s); pass text (str) or UTF-8 bytes"
                % (what, value, exc.reason)) from exc
    raise _errors.TopicTypeError(
        "%s must be a str (or UTF-8 bytes), found %s %r" % (what, type(value).__name__, value))


cdef int _raise_zmq() except -1:
    cdef int err = _zmq_errno()

    raise zmq.ZMQError(err)


# ---------------------------------------------------------------------------
# The module-level publish: one thread-local lookup, then the compiled path.

#: Per-thread state shared with the Python shell (fastfedmsg.api): the shell
#: stores the thread's context in ``context`` and the object that sends in
#: ``publisher`` (a Publisher, or a transport with the same publish method),
#: and calls thread_publishers_changed() whenever it sets either.
thread_state = threading.local()
cdef object _thread_state = thread_state

cdef extern from *:
    """
    /* Reading a threading.local costs more than a small publish does, so
       each thread also keeps a borrowed pointer to its Publisher in C
       thread-local storage, valid while its generation is the current one.
       The generation moves on whenever any thread's publisher is set or
       unset (the shell says so), whenever a Publisher is freed, and in a
       forked child: a pointer that might dangle is never used.  All of it
       is read and written under the GIL. */
    static unsigned long ffm_publishers_generation = 1;   /* 0 marks "none" */
    static __thread PyObject *ffm_cached_publisher = NULL;
    static __thread unsigned long ffm_cached_generation = 0;

    static inline PyObject *ffm_thread_publisher(void)
    {
        return ffm_cached_generation == ffm_publishers_generation ? ffm_cached_publisher : NULL;
    }

    static inline void ffm_remember_thread_publisher(PyObject *publisher)
    {
        ffm_cached_publisher = publisher;
        ffm_cached_generation = ffm_publishers_generation;
    }

    static inline void ffm_forget_thread_publishers(void)
    {
        ffm_publishers_generation++;
        if (ffm_publishers_generation == 0)
            ffm_publishers_generation = 1;
    }
    """
    PyObject *ffm_thread_publisher() noexcept
    void ffm_remember_thread_publisher(PyObject *publisher) noexcept
    void ffm_forget_thread_publishers() noexcept


def thread_publishers_changed():
    """Called by the shell after it sets or clears a thread's publisher."""
    ffm_forget_thread_publishers()


cdef inline object _current_publisher():
    # This thread's publisher, or None: see ffm_thread_publisher above.
    cdef PyObject *cached = ffm_thread_publisher()
    cdef object publisher

    if cached != NULL:
        return <object>cached
    publisher = getattr(_thread_state, "publisher", None)
    if type(publisher) is Publisher:
        ffm_remember_thread_publisher(<PyObject *>publisher)
    return publisher
cdef object _init_from_publish = None
cdef object _renew_after_fork = None


def set_init_hook(hook, renew_after_fork=None):
    """Called by the shell: ``hook(**kw)`` builds a context on first publish;
    ``renew_after_fork(**kw)`` replaces, in a child of os.fork(), the
    context inherited from the parent and returns the new publisher."""
    global _init_from_publish, _renew_after_fork
    _init_from_publish = hook
    _renew_after_fork = renew_after_fork


cdef object _publisher_after_fork(object publisher, dict kw):
    # Only reached in a process that was forked: is this thread's publisher
    # the parent's?  Then it is replaced, never used.
    cdef object context

    if type(publisher) is Publisher:
        if (<Publisher>publisher)._generation == _fork_generation:
            return publisher
    else:
        context = getattr(_thread_state, "context", None)
        if context is None:
            return publisher
        if getattr(context, "fork_generation", _fork_generation) == _fork_generation:
            return publisher
    if _renew_after_fork is None:
        raise _errors.ForkedContextError(
            "this thread's fastfedmsg context was made before os.fork(); call "
            "fastfedmsg.destroy() and fastfedmsg.init() in the child")
    return _renew_after_fork(**kw)


def publish(topic=None, msg=None, modname=None, pre_fire_hook=None, **kw):
    """Publish ``msg`` on ``topic``, creating this thread's context first if needed.

    Arguments and behaviour are fedmsg.publish's: the full topic is
    ``topic_prefix.environment.modname.topic`` unless ``modname.topic``
    already starts with the prefix; ``modname`` defaults to the caller's
    top-level package; an empty ``msg`` is sent as ``{}``.  Keyword arguments
    are passed to init() when this call creates the context.  In a child of
    os.fork(), a context inherited from the parent is replaced by a fresh one
    first.
    """
    cdef object publisher = _current_publisher()

    if publisher is None:
        publisher = _init_from_publish(**kw)
    elif _fork_generation != 0:
        publisher = _publisher_after_fork(publisher, kw)
    if not modname:
        modname = guess_modname()
    if type(publisher) is Publisher:
        (<Publisher>publisher)._publish(topic, msg, modname, pre_fire_hook)
    else:
        publisher.publish(topic, msg, modname, pre_fire_hook)


def publish_many(items, modname=None):
    """Publish many messages in one call; see Publisher.publish_many."""
    cdef object publisher = _current_publisher()

    if publisher is None:
        publisher = _init_from_publish()
    elif _fork_generation != 0:
        publisher = _publisher_after_fork(publisher, {})
    if not modname:
        modname = guess_modname()
    return publisher.publish_many(items, modname)

