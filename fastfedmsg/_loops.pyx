# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Tight loops in C for the benchmarks: the floor sender and the receivers.

Theory of operation
-------------------
A benchmark of a publisher is only as good as the slowest piece around it.
A subscriber written in Python caps every publisher at 170k-280k messages a
second, and a Python loop that sends ready frames costs more than the
compiled publish path it would be compared with.  So both ends live here:

* send_loop() sends ready-made ``[topic, envelope]`` frames from a loop that
  never touches Python: the floor every publisher is compared with.  Its
  frames are made as fastfedmsg._core makes them (_frames.pxi), so the
  floor differs from a real publish only by the building of the envelope.
* encode_loop() is the floor plus one orjson.dumps of each body: what no
  publisher that encodes with orjson can beat, however little else it does.
* receive_loop() counts whole messages on a SUB socket, with the GIL
  released, and reports the monotonic time of the first and last one.  It
  skips probe messages (sent while waiting for the connection), stops at an
  end marker, at a deadline or after an idle gap, and can read a send time
  (nanoseconds since the epoch, ``"KEY":DIGITS``) out of each envelope to
  give publish-to-receive latencies.

Both use the zmq_msg_* functions of the libzmq that pyzmq loaded (see
_libzmq.pxi) on the socket handle pyzmq exposes as ``Socket.underlying``.
This module is for benchmarks and tests; the library never imports it.
"""

import os

import orjson
import zmq
import zmq.backend.cython._zmq as _pyzmq_backend

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec


from cpython.ref cimport Py_INCREF

include "_libzmq.pxi"
include "_frames.pxi"


# The pointers in _libzmq.pxi are declared as needing the GIL; these loops
# call them with the GIL released, so they are cast to nogil types of the
# same C signature.
ctypedef int (*msg_init_size_nogil)(ffm_msg_t *, size_t) noexcept nogil
ctypedef void *(*msg_data_nogil)(ffm_msg_t *) noexcept nogil
ctypedef int (*msg_send_nogil)(ffm_msg_t *, void *, int) noexcept nogil
ctypedef int (*msg_recv_nogil)(ffm_msg_t *, void *, int) noexcept nogil
ctypedef int (*msg_close_nogil)(ffm_msg_t *) noexcept nogil
ctypedef int (*msg_init_nogil)(ffm_msg_t *) noexcept nogil
ctypedef size_t (*msg_size_nogil)(ffm_msg_t *) noexcept nogil
ctypedef int (*msg_more_nogil)(ffm_msg_t *) noexcept nogil
ctypedef int (*errno_nogil)() noexcept nogil

cdef enum:
    ZMQ_EINTR = 4
    KIND_COUNTED = 0
    KIND_PROBE = 1
    KIND_END = 2


cdef inline int64_t _clock_ns(int clock) noexcept nogil:
    cdef timespec now

    clock_gettime(clock, &now)
    return <int64_t>now.tv_sec * 1000000000 + now.tv_nsec


cdef inline bint _contains(const char *data, size_t size, const char *needle,
                           size_t needle_size) noexcept nogil:
    cdef size_t k

    if needle_size == 0 or needle_size > size:
        return False
    for k in range(size - needle_size + 1):
        if data[k] == needle[0] and memcmp(data + k, needle, needle_size) == 0:
            return True
    return False


cdef inline const char *_find(const char *data, size_t size, const char *needle,
                              size_t needle_size) noexcept nogil:
    cdef size_t k

    if needle_size == 0 or needle_size > size:
        return NULL
    for k in range(size - needle_size + 1):
        if data[k] == needle[0] and memcmp(data + k, needle, needle_size) == 0:
            return data + k
    return NULL


cdef int _check_signals() except -1 with gil:
    # Lets Ctrl-C (and the harness's SIGINT) stop a loop waiting on a quiet socket.
    return PyErr_CheckSignals()


cdef void *_handle_of(socket) except NULL:
    cdef void *handle

    if not isinstance(socket, zmq.Socket) or socket.closed:
        raise TypeError("expected an open zmq.Socket, found %r" % (socket,))
    handle = <void *><uintptr_t>socket.underlying
    if handle == NULL:
        raise TypeError("the socket %r has no libzmq handle" % (socket,))
    return handle


cdef inline int _send_two(void *handle, ffm_msg_t *head, ffm_msg_t *tail) noexcept:
    """Send ``head`` and ``tail`` as one message without blocking: 0, or the
    errno of a refused send (both frames are then closed)."""
    cdef int failure

    if _msg_send(head, handle, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0:
        failure = _zmq_errno()
        _msg_close(head)
        _msg_close(tail)
        return failure
    if _msg_send(tail, handle, ZMQ_DONTWAIT) < 0:
        failure = _zmq_errno()
        _msg_close(tail)
        return failure
    return 0


cdef inline char *_frame_copied(ffm_msg_t *part, size_t size) noexcept:
    if _msg_init_size(part, size) != 0:
        return NULL
    return <char *>_msg_data(part)


def send_loop(socket, frames0, frames1, Py_ssize_t count, bint pooled=True):
    """Send ``count`` two-frame messages ``[frames0[k], frames1[k]]`` on ``socket``.

    ``frames0`` and ``frames1`` are equally long sequences of bytes, cycled
    over until ``count`` messages are sent without blocking.  By default the
    frames are made the way fastfedmsg's publisher makes them: the topic
    frame is sent in place, as a constant libzmq frame (so ``frames0`` is
    kept alive for the life of the process: libzmq may read it after this
    returns), and the envelope is copied into a reused frame (_frames.pxi).
    With ``pooled=False`` both are copied into frames that libzmq allocates
    (zmq_msg_init_size, as zmq_send does).  Returns ``count``; raises
    zmq.ZMQError if a send fails.
    """
    cdef void *handle = _handle_of(socket)
    cdef tuple tops = tuple(frames0)
    cdef tuple bodies = tuple(frames1)
    cdef Py_ssize_t n = len(tops), k, j = 0, sent = 0
    cdef const char **data0 = NULL
    cdef const char **data1 = NULL
    cdef size_t *size0 = NULL
    cdef size_t *size1 = NULL
    cdef ffm_msg_t head, tail
    cdef char *data
    cdef int failure = 0

    if n == 0 or len(bodies) != n:
        raise ValueError(
            "expected two equally long, non-empty sequences of frames; found %d topic "
            "frames and %d envelope frames" % (n, len(bodies)))
    if count < 0:
        raise ValueError("expected a message count >= 0, found %d" % count)
    for k in range(n):
        if type(tops[k]) is not bytes or type(bodies[k]) is not bytes:
            raise TypeError("frame %d is not bytes; pass bytes frames" % k)

    data0 = <const char **>malloc(n * sizeof(char *))
    data1 = <const char **>malloc(n * sizeof(char *))
    size0 = <size_t *>malloc(n * sizeof(size_t))
    size1 = <size_t *>malloc(n * sizeof(size_t))
    try:
        if data0 == NULL or data1 == NULL or size0 == NULL or size1 == NULL:
            raise MemoryError()
        for k in range(n):
            data0[k] = PyBytes_AS_STRING(tops[k])
            size0[k] = PyBytes_GET_SIZE(tops[k])
            data1[k] = PyBytes_AS_STRING(bodies[k])
            size1[k] = PyBytes_GET_SIZE(bodies[k])

        # The GIL stays held, as it is in a publisher's loop (the frame
        # pool relies on it).
        if pooled:
            Py_INCREF(tops)  # never released: see the docstring
        while sent < count:
            if pooled:
                if _msg_init_data(&head, <void *>data0[j], size0[j], NULL, NULL) != 0:
                    _no_frame_memory(size0[j])
            else:
                data = _frame_copied(&head, size0[j])
                if data == NULL:
                    _no_frame_memory(size0[j])
                memcpy(data, data0[j], size0[j])
            data = _frame_init(&tail, size1[j]) if pooled else _frame_copied(&tail, size1[j])
            if data == NULL:
                _msg_close(&head)
                _no_frame_memory(size1[j])
            memcpy(data, data1[j], size1[j])
            failure = _send_two(handle, &head, &tail)
            if failure:
                break
            sent += 1
            j += 1
            if j == n:
                j = 0
    finally:
        free(data0)
        free(data1)
        free(size0)
        free(size1)

    if failure:
        raise zmq.ZMQError(failure)
    return sent


def encode_loop(socket, frames0, bodies, Py_ssize_t count):
    """Send ``count`` messages ``[frames0[k], orjson.dumps(bodies[k])]`` on ``socket``.

    As send_loop (frames made the same way, ``frames0`` kept for the life of
    the process), except that each body is encoded with orjson as it is
    sent.  Returns ``count``; raises zmq.ZMQError if a send fails.
    """
    cdef void *handle = _handle_of(socket)
    cdef tuple tops = tuple(frames0)
    cdef tuple messages = tuple(bodies)
    cdef Py_ssize_t n = len(tops), k, j = 0, sent = 0, size
    cdef object dumps = orjson.dumps
    cdef bytes top, encoded
    cdef ffm_msg_t head, tail
    cdef char *data
    cdef int failure = 0

    if n == 0 or len(messages) != n:
        raise ValueError(
            "expected two equally long, non-empty sequences; found %d topic frames and "
            "%d bodies" % (n, len(messages)))
    if count < 0:
        raise ValueError("expected a message count >= 0, found %d" % count)
    for k in range(n):
        if type(tops[k]) is not bytes:
            raise TypeError("topic frame %d is not bytes; pass bytes frames" % k)
    Py_INCREF(tops)  # never released: libzmq reads the topic frames in place

    while sent < count:
        top = <bytes>tops[j]
        encoded = dumps(messages[j])
        if _msg_init_data(&head, PyBytes_AS_STRING(top), PyBytes_GET_SIZE(top), NULL, NULL) != 0:
            _no_frame_memory(PyBytes_GET_SIZE(top))
        size = PyBytes_GET_SIZE(encoded)
        data = _frame_init(&tail, size)
        if data == NULL:
            _msg_close(&head)
            _no_frame_memory(size)
        memcpy(data, PyBytes_AS_STRING(encoded), size)
        failure = _send_two(handle, &head, &tail)
        if failure:
            break
        sent += 1
        j += 1
        if j == n:
            j = 0

    if failure:
        raise zmq.ZMQError(failure)
    return sent


cdef inline int _parse_int64(const char *p, const char *end, int64_t *value) noexcept nogil:
    cdef int64_t result = 0
    cdef int digits = 0

    while p < end and p[0] >= b'0' and p[0] <= b'9' and digits < 19:
        result = result * 10 + (p[0] - 48)
        p += 1
        digits += 1
    value[0] = result
    return digits


def receive_loop(socket, double timeout, double idle=5.0, bytes probe_marker=b"",
                 bytes end_marker=b"", bytes stamp_key=None):
    """Receive and count messages on a SUB socket until the end marker arrives.

    Stops at the first message whose topic frame contains ``end_marker``,
    after ``timeout`` seconds in all, or when ``idle`` seconds pass without
    a message once counting has begun.  Messages whose topic frame contains
    ``probe_marker`` are dropped uncounted.  With ``stamp_key`` (for example
    ``b'"sent_ns":'``) the digits after it in each counted message's last
    frame are read as the send time in nanoseconds since the epoch, and the
    latency to this process's CLOCK_REALTIME is kept.

    Sets RCVTIMEO on ``socket`` (to wake up for deadlines and signals).
    Returns a dict: ``count``, ``bytes`` (of counted messages), ``probes``,
    ``first_ns`` and ``last_ns`` (CLOCK_MONOTONIC, of the first and last
    counted message), ``end_seen``, ``timed_out``, ``stamps_missing`` and
    ``latencies_ns`` (bytes of native int64, or None).
    """
    cdef void *handle = _handle_of(socket)
    cdef const char *probe = PyBytes_AS_STRING(probe_marker)
    cdef size_t probe_size = PyBytes_GET_SIZE(probe_marker)
    cdef const char *end = PyBytes_AS_STRING(end_marker)
    cdef size_t end_size = PyBytes_GET_SIZE(end_marker)
    cdef const char *key = NULL
    cdef size_t key_size = 0
    cdef bint want_latency = stamp_key is not None
    cdef int64_t started, deadline, idle_ns, now, first = 0, last = 0, stamp
    cdef int64_t count = 0, probes = 0, received_bytes = 0, message_bytes = 0
    cdef int64_t stamps_missing = 0
    cdef int64_t *latencies = NULL
    cdef int64_t *grown
    cdef Py_ssize_t latency_capacity = 0
    cdef bint end_seen = False, timed_out = False
    cdef int kind = KIND_COUNTED, frame = 0, failure = 0, err
    cdef const char *payload
    cdef const char *found
    cdef size_t size
    cdef ffm_msg_t part
    cdef msg_init_nogil init = <msg_init_nogil><void *>_msg_init
    cdef msg_recv_nogil recv = <msg_recv_nogil><void *>_msg_recv
    cdef msg_close_nogil close = <msg_close_nogil><void *>_msg_close
    cdef msg_data_nogil data = <msg_data_nogil><void *>_msg_data
    cdef msg_size_nogil msg_size = <msg_size_nogil><void *>_msg_size
    cdef msg_more_nogil more = <msg_more_nogil><void *>_msg_more
    cdef errno_nogil zmq_errno = <errno_nogil><void *>_zmq_errno

    if timeout <= 0 or idle <= 0:
        raise ValueError("expected timeout > 0 and idle > 0 seconds, found %r and %r"
                         % (timeout, idle))
    if want_latency:
        key = PyBytes_AS_STRING(stamp_key)
        key_size = PyBytes_GET_SIZE(stamp_key)
        if key_size == 0:
            raise ValueError("stamp_key must not be empty; pass None to skip latencies")
    socket.setsockopt(zmq.RCVTIMEO, 50)

    init(&part)
    try:
        with nogil:
            started = _clock_ns(CLOCK_MONOTONIC)
            deadline = started + <int64_t>(timeout * 1e9)
            idle_ns = <int64_t>(idle * 1e9)
            while True:
                if recv(&part, handle, 0) < 0:
                    err = zmq_errno()
                    if err != ZMQ_EAGAIN and err != ZMQ_EINTR:
                        failure = err
                        break
                    _check_signals()
                    now = _clock_ns(CLOCK_MONOTONIC)
                    if now >= deadline or (count > 0 and now - last >= idle_ns):
                        timed_out = True
                        break
                    continue

                payload = <const char *>data(&part)
                size = msg_size(&part)
                if frame == 0:
                    if end_size and _contains(payload, size, end, end_size):
                        kind = KIND_END
                    elif probe_size and _contains(payload, size, probe, probe_size):
                        kind = KIND_PROBE
                    else:
                        kind = KIND_COUNTED
                    message_bytes = 0
                message_bytes += size
                if more(&part):
                    frame += 1
                    continue

                # The last frame of a message: count it.
                frame = 0
                if kind == KIND_END:
                    end_seen = True
                    break
                if kind == KIND_PROBE:
                    probes += 1
                    continue
                last = _clock_ns(CLOCK_MONOTONIC)
                if count == 0:
                    first = last
                count += 1
                received_bytes += message_bytes
                if want_latency:
                    found = _find(payload, size, key, key_size)
                    if found == NULL or _parse_int64(found + key_size, payload + size,
                                                     &stamp) == 0:
                        stamps_missing += 1
                        continue
                    if count > latency_capacity:
                        latency_capacity = 4096 if latency_capacity == 0 else latency_capacity * 2
                        grown = <int64_t *>realloc(latencies, latency_capacity * sizeof(int64_t))
                        if grown == NULL:
                            failure = -1
                            break
                        latencies = grown
                    latencies[count - 1 - stamps_missing] = _clock_ns(CLOCK_REALTIME) - stamp

        if failure == -1:
            raise MemoryError("could not keep %d latencies" % count)
        if failure:
            raise zmq.ZMQError(failure)
        latency_bytes = None
        if want_latency:
            latency_bytes = PyBytes_FromStringAndSize(
                <char *>latencies, (count - stamps_missing) * sizeof(int64_t))
    finally:
        close(&part)
        free(latencies)

    return {
        "count": count,
        "bytes": received_bytes,
        "probes": probes,
        "first_ns": first,
        "last_ns": last,
        "end_seen": end_seen,
        "timed_out": timed_out,
        "stamps_missing": stamps_missing,
        "latencies_ns": latency_bytes,
    }
