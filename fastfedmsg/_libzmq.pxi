# libzmq, reached through the copy that pyzmq already loaded.
#
# Included (not cimported) by every extension of fastfedmsg that touches
# libzmq.  We never link libzmq: a second copy in the process makes every send
# on pyzmq's sockets fail with ENOTSOCK, and linking pyzmq's bundled copy by
# name breaks on every pyzmq upgrade.  Instead the zmq_msg_* functions are
# looked up at import with dlopen(RTLD_NOLOAD) on pyzmq's compiled module,
# whose dependencies include the libzmq it uses; so no zmq.h is needed either.
# Requires: import os; import zmq.backend.cython._zmq as _pyzmq_backend.

cdef extern from "<dlfcn.h>":
    void *dlopen(const char *filename, int flags)
    void *dlsym(void *handle, const char *symbol)
    char *dlerror()
    int RTLD_NOW
    int RTLD_NOLOAD


cdef extern from *:
    """
    /* zmq_msg_t is a 64-byte, pointer-aligned opaque struct in libzmq's ABI. */
    typedef union { unsigned char _[64]; void *p; double d; } ffm_msg_t;
    typedef int (*ffm_msg_init_size_fn)(ffm_msg_t *, size_t);
    typedef void *(*ffm_msg_data_fn)(ffm_msg_t *);
    typedef int (*ffm_msg_send_fn)(ffm_msg_t *, void *, int);
    typedef int (*ffm_msg_close_fn)(ffm_msg_t *);
    typedef int (*ffm_errno_fn)(void);
    typedef int (*ffm_msg_init_fn)(ffm_msg_t *);
    typedef int (*ffm_msg_recv_fn)(ffm_msg_t *, void *, int);
    typedef size_t (*ffm_msg_size_fn)(ffm_msg_t *);
    typedef int (*ffm_msg_more_fn)(ffm_msg_t *);
    typedef void (*ffm_free_fn)(void *, void *);
    typedef int (*ffm_msg_init_data_fn)(ffm_msg_t *, void *, size_t, ffm_free_fn, void *);
    """
    ctypedef struct ffm_msg_t:
        pass
    ctypedef int (*ffm_msg_init_size_fn)(ffm_msg_t *, size_t)
    ctypedef void *(*ffm_msg_data_fn)(ffm_msg_t *)
    ctypedef int (*ffm_msg_send_fn)(ffm_msg_t *, void *, int)
    ctypedef int (*ffm_msg_close_fn)(ffm_msg_t *)
    ctypedef int (*ffm_errno_fn)()
    ctypedef int (*ffm_msg_init_fn)(ffm_msg_t *)
    ctypedef int (*ffm_msg_recv_fn)(ffm_msg_t *, void *, int)
    ctypedef size_t (*ffm_msg_size_fn)(ffm_msg_t *)
    ctypedef int (*ffm_msg_more_fn)(ffm_msg_t *)
    ctypedef void (*ffm_free_fn)(void *, void *)
    ctypedef int (*ffm_msg_init_data_fn)(ffm_msg_t *, void *, size_t, ffm_free_fn, void *)


# Stable parts of libzmq's ABI (zmq.h has had these values since 3.x).
DEF ZMQ_DONTWAIT = 1
DEF ZMQ_SNDMORE = 2
DEF ZMQ_EAGAIN = 11

cdef ffm_msg_init_size_fn _msg_init_size = NULL
cdef ffm_msg_data_fn _msg_data = NULL
cdef ffm_msg_send_fn _msg_send = NULL
cdef ffm_msg_close_fn _msg_close = NULL
cdef ffm_errno_fn _zmq_errno = NULL
cdef ffm_msg_init_fn _msg_init = NULL
cdef ffm_msg_recv_fn _msg_recv = NULL
cdef ffm_msg_size_fn _msg_size = NULL
cdef ffm_msg_more_fn _msg_more = NULL
cdef ffm_msg_init_data_fn _msg_init_data = NULL


cdef void *_resolve(void *handle, const char *name) except NULL:
    cdef void *fn = dlsym(handle, name)

    if fn == NULL:
        raise ImportError(
            "fastfedmsg could not find %s in the libzmq that pyzmq loaded "
            "(%s); reinstall pyzmq from its wheel" % (name.decode(), _pyzmq_backend.__file__))
    return fn


cdef _bind_libzmq():
    global _msg_init_size, _msg_data, _msg_send, _msg_close, _zmq_errno
    global _msg_init, _msg_recv, _msg_size, _msg_more, _msg_init_data
    cdef bytes path = os.fsencode(_pyzmq_backend.__file__)
    cdef void *handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD)

    if handle == NULL:
        raise ImportError(
            "fastfedmsg could not reach pyzmq's compiled module %s: %s"
            % (_pyzmq_backend.__file__, (dlerror() or b"?").decode(errors="replace")))

    _msg_init_size = <ffm_msg_init_size_fn>_resolve(handle, b"zmq_msg_init_size")
    _msg_data = <ffm_msg_data_fn>_resolve(handle, b"zmq_msg_data")
    _msg_send = <ffm_msg_send_fn>_resolve(handle, b"zmq_msg_send")
    _msg_close = <ffm_msg_close_fn>_resolve(handle, b"zmq_msg_close")
    _zmq_errno = <ffm_errno_fn>_resolve(handle, b"zmq_errno")
    _msg_init = <ffm_msg_init_fn>_resolve(handle, b"zmq_msg_init")
    _msg_recv = <ffm_msg_recv_fn>_resolve(handle, b"zmq_msg_recv")
    _msg_size = <ffm_msg_size_fn>_resolve(handle, b"zmq_msg_size")
    _msg_more = <ffm_msg_more_fn>_resolve(handle, b"zmq_msg_more")
    _msg_init_data = <ffm_msg_init_data_fn>_resolve(handle, b"zmq_msg_init_data")


_bind_libzmq()


