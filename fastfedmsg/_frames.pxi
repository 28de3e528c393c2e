# Writable libzmq frames whose memory is reused instead of malloc'd per message.
#
# Included by _core.pyx and _loops.pyx after _libzmq.pxi.
#
# Why: zmq_msg_init_size mallocs each frame in the publishing thread, and
# libzmq's I/O thread frees it once sent.  With glibc, a chunk freed by
# another thread goes back to the publishing thread's arena under the
# arena's lock, so the two threads fight over that lock on every message:
# profiling showed a third of the publishing thread's time in malloc, free
# and the futex calls of that lock.  Here a frame's bytes come from a block
# the publisher keeps; libzmq calls ffm_block_release from its I/O thread
# when done with the frame, which pushes the block onto a lock-free stack
# that the publisher takes back whole.  libzmq still mallocs a 40-byte
# header per frame (zmq_msg_init_data), which glibc serves from per-thread
# and lock-free lists.
#
# Blocks come in power-of-two sizes from 128 B to 8 KiB.  A larger frame, and
# one of up to 33 bytes (which libzmq stores inside the zmq_msg_t), is made
# with zmq_msg_init_size as before: for large frames the copy and the
# encoding dwarf the allocation, and pooling them measured slower (rounding
# up doubles the memory, and the idle bound is soon reached when a queue
# runs deep).  Each size keeps at most 4 MiB of idle blocks, give or take
# the few that a race on the approximate count lets through: the returned
# stack takes at most half of that, and the publisher's spare list holds no
# more than one such stack taken whole; blocks beyond it are freed.  Blocks
# in flight when a process forks are never returned in the child, whose copy
# of them is simply unused.
#
# Thread safety: ffm_block_release runs in any thread without the GIL and
# only pushes with compare-and-swap.  ffm_block_take runs with the GIL held
# (the extension modules are not free-threaded), which is what protects the
# ffm_spare lists; it takes the returned stack with one atomic exchange, so
# the stack has no ABA problem.

cdef extern from *:
    """
    #include <stdlib.h>

    #define FFM_CLASSES 7               /* 128 B << 0 .. 128 B << 6 = 8 KiB */
    #define FFM_SMALLEST_SHIFT 7
    #define FFM_IDLE_BYTES ((size_t)4 << 20)
    #define FFM_HEADER 16               /* keeps the frame 16-byte aligned */
    #define FFM_INLINE_MAX 33           /* libzmq's VSM: stored in the zmq_msg_t */

    typedef struct ffm_block {
        struct ffm_block *next;
        size_t cls;
    } ffm_block;

    /* What libzmq's I/O threads write and what the publishing thread
       writes live on separate cache lines: sharing one, every message would
       move it between the two cores twice. */
    static struct {
        ffm_block *stack[FFM_CLASSES];      /* pushed by libzmq's threads */
        size_t count[FFM_CLASSES];          /* approximate */
    } ffm_returned_blocks __attribute__((aligned(128)));
    static struct {
        ffm_block *spare[FFM_CLASSES];      /* taken back, used under the GIL */
        size_t made[FFM_CLASSES];           /* blocks malloc'd, under the GIL */
    } ffm_own_blocks __attribute__((aligned(128)));
    #define ffm_returned ffm_returned_blocks.stack
    #define ffm_returned_count ffm_returned_blocks.count
    #define ffm_spare ffm_own_blocks.spare
    #define ffm_made ffm_own_blocks.made

    static void ffm_block_release(void *data, void *hint)
    {
        ffm_block *block = (ffm_block *)hint;
        size_t cls = block->cls;
        ffm_block *head;
        (void)data;

        size_t idle = __atomic_load_n(&ffm_returned_count[cls], __ATOMIC_RELAXED);

        if (idle >= ((FFM_IDLE_BYTES / 2) >> (cls + FFM_SMALLEST_SHIFT))) {
            free(block);
            return;
        }
        /* A plain store, not an atomic add: the count only bounds idle
           memory, and an update lost to a race costs one block. */
        __atomic_store_n(&ffm_returned_count[cls], idle + 1, __ATOMIC_RELAXED);
        head = __atomic_load_n(&ffm_returned[cls], __ATOMIC_RELAXED);
        do {
            block->next = head;
        } while (!__atomic_compare_exchange_n(&ffm_returned[cls], &head, block, 1,
                                              __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    }

    /* A block for a frame of `size` bytes (its data at block + FFM_HEADER),
       or NULL when `size` is outside the pooled sizes or memory ran out. */
    static ffm_block *ffm_block_take(size_t size)
    {
        size_t cls = 0;
        ffm_block *block;

        if (size <= FFM_INLINE_MAX)
            return NULL;
        while (((size_t)1 << (cls + FFM_SMALLEST_SHIFT)) < size) {
            if (++cls == FFM_CLASSES)
                return NULL;
        }
        block = ffm_spare[cls];
        if (block == NULL) {
            block = __atomic_exchange_n(&ffm_returned[cls], NULL, __ATOMIC_ACQUIRE);
            if (block == NULL) {
                block = (ffm_block *)malloc(FFM_HEADER + ((size_t)1 << (cls + FFM_SMALLEST_SHIFT)));
                if (block != NULL) {
                    block->cls = cls;
                    ffm_made[cls]++;
                }
                return block;
            }
            __atomic_store_n(&ffm_returned_count[cls], 0, __ATOMIC_RELAXED);
        }
        ffm_spare[cls] = block->next;
        return block;
    }

    static char *ffm_block_data(ffm_block *block)
    {
        return (char *)block + FFM_HEADER;
    }

    /* Idle blocks of one size, for tests and diagnostics.  Only the GIL
       holder removes blocks, so walking below the head is safe while
       libzmq's threads push. */
    static inline size_t ffm_idle_blocks(size_t cls)
    {
        size_t count = 0;
        ffm_block *block;

        for (block = ffm_spare[cls]; block != NULL; block = block->next)
            count++;
        for (block = __atomic_load_n(&ffm_returned[cls], __ATOMIC_ACQUIRE); block != NULL;
                block = block->next)
            count++;
        return count;
    }
    """
    enum:
        FFM_CLASSES
        FFM_SMALLEST_SHIFT
        FFM_IDLE_BYTES
    size_t ffm_made[FFM_CLASSES]
    size_t ffm_idle_blocks(size_t cls) noexcept
    ctypedef struct ffm_block:
        pass
    void ffm_block_release(void *data, void *hint) noexcept nogil
    ffm_block *ffm_block_take(size_t size) noexcept
    char *ffm_block_data(ffm_block *block) noexcept nogil


cdef inline char *_frame_init(ffm_msg_t *part, size_t size) noexcept:
    """Make ``part`` a new frame of ``size`` writable bytes and return them, or
    NULL when memory ran out (``part`` is then not initialised).

    The caller fills the bytes, then sends or closes ``part``.
    """
    cdef ffm_block *block = ffm_block_take(size)

    if block != NULL:
        if _msg_init_data(part, ffm_block_data(block), size, ffm_block_release, block) == 0:
            return ffm_block_data(block)
        ffm_block_release(NULL, block)
        return NULL
    if _msg_init_size(part, size) != 0:
        return NULL
    return <char *>_msg_data(part)


cdef int _no_frame_memory(size_t size) except -1:
    raise MemoryError("libzmq could not allocate a frame of %d bytes; nothing was sent" % size)

