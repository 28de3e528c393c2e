/* The JSON writer of the hot path: plain message bodies, written in one pass.
 *
 * Theory of operation
 * -------------------
 * Almost every fedmsg body holds only exact dicts with str keys, lists,
 * tuples, str, int, bool, None and finite floats.  For those, JSON is
 * written here straight into a growable buffer, in the same walk that checks
 * the types: no separate scan, no intermediate bytes object.  Anything else
 * (subclasses, datetimes, sets, objects with __json__, UUIDs and Enums,
 * NaN and infinities, integers beyond 64 bits, non-str keys, lone
 * surrogates, nesting deeper than the limit) stops the walk with
 * FFM_NOT_PLAIN, and the caller encodes the body the general way
 * (_core.pyx: orjson with fedmsg's default hook, or fedmsg's own encoder).
 *
 * What is written decodes to what fedmsg's encoder writes for the same
 * value: keys in the dict's order (fedmsg sorts them; no decoder can tell),
 * non-ASCII text as raw UTF-8 (fedmsg writes \uXXXX escapes; the decoded
 * text is the same), floats as repr() writes them or, rarely, as another
 * text of the same double (see ffm_write_float).
 *
 * Safety: the GIL is held throughout and no Python code runs (no __json__,
 * no __index__, no finalizer), so the borrowed references to dict entries
 * and list items stay valid and the buffer cannot be reentered.
 *
 * Speed: most strings are short (the corpus median is 7 characters) and of
 * varying length, so a loop over their bytes spends its time in branch
 * mispredictions.  ASCII text is checked and copied 16 bytes at a time
 * instead (SSE2, or two 64-bit words elsewhere).  The last block of a text
 * may extend up to 15 bytes past its end: the block is read only when it
 * cannot cross into another page (so the read cannot fault), and the bytes
 * past the end are masked out of the check and overwritten in the output.
 */
#ifndef FASTFEDMSG_JSON_WRITER_H
#define FASTFEDMSG_JSON_WRITER_H

#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__) && !defined(FFM_NO_SSE2)
#include <emmintrin.h>
#endif

#define FFM_NOT_PLAIN 0
#define FFM_WROTE 1

typedef struct {
    char *data;
    size_t size;        /* bytes written */
    size_t capacity;    /* bytes allocated */
} ffm_buffer;

static int ffm_buffer_grow(ffm_buffer *buf, size_t extra)
{
    size_t capacity = buf->capacity ? buf->capacity : 4096;
    char *data;

    if (extra > PY_SSIZE_T_MAX - buf->size) {
        PyErr_NoMemory();
        return -1;
    }
    while (capacity < buf->size + extra)
        capacity *= 2;
    data = (char *)PyMem_RawRealloc(buf->data, capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    buf->data = data;
    buf->capacity = capacity;
    return 0;
}

/* Room for `extra` more bytes: 0, or -1 with MemoryError set. */
static inline int ffm_reserve(ffm_buffer *buf, size_t extra)
{
    if (buf->capacity - buf->size >= extra)
        return 0;
    return ffm_buffer_grow(buf, extra);
}

/* Gives the memory back (the next write allocates again). */
static void ffm_buffer_release(ffm_buffer *buf)
{
    PyMem_RawFree(buf->data);
    buf->data = NULL;
    buf->size = 0;
    buf->capacity = 0;
}

/* The writers below pass a cursor, `out`, from one to the next and return
   where they stopped, or NULL to stop the walk: with an exception set for
   MemoryError, without one for FFM_NOT_PLAIN.  Each makes room for what it
   writes plus one byte, so that its caller can follow a value with ',' or
   ':' without another check. */

static char *ffm_grow_at(ffm_buffer *buf, char *out, size_t need)
{
    buf->size = (size_t)(out - buf->data);
    if (ffm_buffer_grow(buf, need) < 0)
        return NULL;
    return buf->data + buf->size;
}

/* `out`, or where it moved to, with room for `need` bytes; NULL when memory ran out. */
static inline char *ffm_room(ffm_buffer *buf, char *out, size_t need)
{
    if ((size_t)(buf->data + buf->capacity - out) >= need)
        return out;
    return ffm_grow_at(buf, out, need);
}

static inline char *ffm_write_raw(ffm_buffer *buf, char *out, const char *bytes, size_t n)
{
    out = ffm_room(buf, out, n + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, bytes, n);
    return out + n;
}

/* ---- text ---------------------------------------------------------------- */

/* 1 for the ASCII characters JSON must escape: controls, '"' and '\'. */
static const unsigned char ffm_must_escape[128] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* The escape of one such character, as Python's json module writes it. */
static char *ffm_write_escape(char *out, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";

    *out++ = '\\';
    switch (c) {
    case '"': *out++ = '"'; break;
    case '\\': *out++ = '\\'; break;
    case '\n': *out++ = 'n'; break;
    case '\r': *out++ = 'r'; break;
    case '\t': *out++ = 't'; break;
    case '\b': *out++ = 'b'; break;
    case '\f': *out++ = 'f'; break;
    default:
        memcpy(out, "u00", 3);
        out[3] = hex[c >> 4];
        out[4] = hex[c & 15];
        out += 5;
    }
    return out;
}

static char *ffm_write_ascii_escaping(char *out, const char *text, Py_ssize_t n)
{
    Py_ssize_t k;
    unsigned char c;

    for (k = 0; k < n; k++) {
        c = (unsigned char)text[k];
        if (ffm_must_escape[c])
            out = ffm_write_escape(out, c);
        else
            *out++ = (char)c;
    }
    return out;
}

/* Build with CFLAGS=-DFFM_NO_SSE2 to try the portable branch on x86. */
#if defined(__SSE2__) && !defined(FFM_NO_SSE2)
/* Nonzero when one of the first `count` (1..16) of the 16 bytes at `p`,
   ASCII text, must be escaped. */
static inline unsigned ffm_block_needs_escape(const char *p, Py_ssize_t count)
{
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i hit = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                     _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
        _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));

    return (unsigned)_mm_movemask_epi8(hit) & (unsigned)((1u << count) - 1);
}

static inline void ffm_copy_block(char *dst, const char *src)
{
    _mm_storeu_si128((__m128i *)dst, _mm_loadu_si128((const __m128i *)src));
}
#define FFM_BLOCKS 1

#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The same with two 64-bit words.  The per-byte tests below are exact for
   bytes under 0x80 (ASCII) and can only flag extra bytes above a byte that
   is truly flagged, so bytes past `count` never hide or fake a result. */
#define FFM_ONES 0x0101010101010101ULL
#define FFM_HIGHS 0x8080808080808080ULL

static inline uint64_t ffm_word_needs_escape(uint64_t v)
{
    uint64_t quote = v ^ (FFM_ONES * '"'), slash = v ^ (FFM_ONES * '\\');

    return (((v - FFM_ONES * 0x20) & ~v) | ((quote - FFM_ONES) & ~quote)
            | ((slash - FFM_ONES) & ~slash)) & FFM_HIGHS;
}

static inline uint64_t ffm_first_bytes(Py_ssize_t count)
{
    return count >= 8 ? ~0ULL : (1ULL << (8 * count)) - 1;
}

static inline unsigned ffm_block_needs_escape(const char *p, Py_ssize_t count)
{
    uint64_t low, high;

    memcpy(&low, p, 8);
    memcpy(&high, p + 8, 8);
    low = ffm_word_needs_escape(low) & ffm_first_bytes(count);
    high = count > 8 ? ffm_word_needs_escape(high) & ffm_first_bytes(count - 8) : 0;
    return (low | high) != 0;
}

static inline void ffm_copy_block(char *dst, const char *src)
{
    memcpy(dst, src, 16);
}
#define FFM_BLOCKS 1
#endif

/* '"' text '"' for `n` ASCII characters at `text`; `out` has room for
   6 * n + 18 bytes. */
static inline char *ffm_write_ascii(char *out, const char *text, Py_ssize_t n)
{
    *out++ = '"';
#ifdef FFM_BLOCKS
    if (n > 0 && ((uintptr_t)(text + n - 1) & 4095) <= 4096 - 16) {
        /* Every 16-byte block read ends in the page of the last character. */
        Py_ssize_t k = 0, left, count;

        for (;;) {
            left = n - k;
            count = left < 16 ? left : 16;
            if (ffm_block_needs_escape(text + k, count)) {
                out = ffm_write_ascii_escaping(out, text + k, count);
            } else {
                ffm_copy_block(out, text + k);
                out += count;
            }
            if (left <= 16)
                break;
            k += 16;
        }
        *out++ = '"';
        return out;
    }
#endif
    out = ffm_write_ascii_escaping(out, text, n);
    *out++ = '"';
    return out;
}

/* Text that is not all ASCII: UTF-8, escaping what JSON requires; `out`
   has room for 6 * n + 2 bytes.  A lone surrogate cannot be UTF-8: the
   general path writes it as fedmsg does. */
static char *ffm_write_wide_text(char *out, PyObject *text, Py_ssize_t n)
{
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t k;
    Py_UCS4 c;

    *out++ = '"';
    for (k = 0; k < n; k++) {
        c = PyUnicode_READ(kind, data, k);
        if (c < 0x80) {
            if (ffm_must_escape[c])
                out = ffm_write_escape(out, (unsigned char)c);
            else
                *out++ = (char)c;
        } else if (c < 0x800) {
            *out++ = (char)(0xC0 | (c >> 6));
            *out++ = (char)(0x80 | (c & 0x3F));
        } else if (c >= 0xD800 && c <= 0xDFFF) {
            return NULL;
        } else if (c < 0x10000) {
            *out++ = (char)(0xE0 | (c >> 12));
            *out++ = (char)(0x80 | ((c >> 6) & 0x3F));
            *out++ = (char)(0x80 | (c & 0x3F));
        } else {
            *out++ = (char)(0xF0 | (c >> 18));
            *out++ = (char)(0x80 | ((c >> 12) & 0x3F));
            *out++ = (char)(0x80 | ((c >> 6) & 0x3F));
            *out++ = (char)(0x80 | (c & 0x3F));
        }
    }
    *out++ = '"';
    return out;
}

/* An exact str. */
static inline char *ffm_write_text(ffm_buffer *buf, char *out, PyObject *text)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);

    /* 6 bytes a character at most (an escape), the quotes, the spare byte
       and the block copy's overhang. */
    if (n > (PY_SSIZE_T_MAX - 32) / 6) {
        PyErr_NoMemory();
        return NULL;
    }
    out = ffm_room(buf, out, 6 * (size_t)n + 19);
    if (out == NULL)
        return NULL;
    if (PyUnicode_IS_COMPACT_ASCII(text))
        return ffm_write_ascii(out, (const char *)PyUnicode_DATA(text), n);
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0)
        return NULL;
#endif
    return ffm_write_wide_text(out, text, n);
}

/* ---- numbers ------------------------------------------------------------- */

static const char ffm_digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* The bytes from `start` to `end` (at most FFM_SHORT), in a local buffer
   that is readable for FFM_SHORT bytes from `start`: copied as one block of
   that fixed size, which the compiler turns into a few moves instead of a
   call to memcpy, and which the next write overwrites past `end`. */
#define FFM_SHORT 32

static inline char *ffm_write_short(ffm_buffer *buf, char *out, const char *start,
                                    const char *end)
{
    out = ffm_room(buf, out, FFM_SHORT + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, start, FFM_SHORT);
    return out + (end - start);
}

/* The decimal digits of `value`, written to end just before `end`; returns
   where they start. */
static inline char *ffm_digits_before(char *end, unsigned long long value)
{
    while (value >= 100) {
        end -= 2;
        memcpy(end, ffm_digit_pairs + 2 * (value % 100), 2);
        value /= 100;
    }
    if (value >= 10) {
        end -= 2;
        memcpy(end, ffm_digit_pairs + 2 * value, 2);
    } else {
        *--end = (char)('0' + value);
    }
    return end;
}

/* How many decimal digits `value` has. */
static inline int ffm_uint_length(unsigned long long value)
{
    static const unsigned long long powers[20] = {
        1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
        100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL,
        10000000000000ULL, 100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
        100000000000000000ULL, 1000000000000000000ULL, 10000000000000000000ULL,
    };
    int guess;

    if (value < 10)
        return 1;
    /* log10(2) ~ 1233 / 4096: the length is the guess or one more. */
    guess = ((64 - __builtin_clzll(value)) * 1233) >> 12;
    return guess + (value >= powers[guess]);
}

/* The digits of `value` at `dst`; returns how many. */
static inline int ffm_write_uint(char *dst, unsigned long long value)
{
    int length = ffm_uint_length(value);

    ffm_digits_before(dst + length, value);
    return length;
}

/* An exact int; beyond 64 bits it is left to the general path. */
static char *ffm_write_int(ffm_buffer *buf, char *out, PyObject *number)
{
    long long value;
    int overflow;
    unsigned long long magnitude;
    char digits[2 * FFM_SHORT];
    char *end = digits + FFM_SHORT, *p;

#if PY_VERSION_HEX >= 0x030C0000
    if (PyUnstable_Long_IsCompact((PyLongObject *)number)) {
        value = (long long)PyUnstable_Long_CompactValue((PyLongObject *)number);
    } else
#else
    /* Up to two 30-bit digits (most ints in a body, timestamps included),
       read directly; Python.h of 3.11 declares the layout. */
    Py_ssize_t ndigits = Py_SIZE(number);
    const digit *d = ((PyLongObject *)number)->ob_digit;

    if (ndigits >= -2 && ndigits <= 2 && PyLong_SHIFT == 30) {
        unsigned long long u = ndigits == 0 ? 0 : d[0];

        if (ndigits == 2 || ndigits == -2)
            u |= (unsigned long long)d[1] << PyLong_SHIFT;
        value = ndigits < 0 ? -(long long)u : (long long)u;
    } else
#endif
    {
        value = PyLong_AsLongLongAndOverflow(number, &overflow);
        if (overflow)
            return NULL;
        if (value == -1 && PyErr_Occurred())
            return NULL;
    }
    magnitude = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    p = ffm_digits_before(end, magnitude);
    if (value < 0)
        *--p = '-';
    return ffm_write_short(buf, out, p, end);
}

/* 10^k for k = 0..17: exact in a double. */
static const double ffm_powers_of_ten[18] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
    1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17,
};

static const unsigned long long ffm_integer_powers_of_ten[18] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
    100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL,
    10000000000000ULL, 100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
    100000000000000000ULL,
};

#define FFM_TWO_TO_53 9007199254740992.0

/* A finite exact float.  Python's repr (what fedmsg writes) goes through
   dtoa, about 300 ns a value; most floats in bodies are timestamps and
   prices with a few decimals, which are written faster here, as the fewest
   decimals d for which M / 10^d, M the integer nearest to |value| * 10^d,
   rounds back to |value|.  M and 10^d are exact doubles, so that division
   is the correctly rounded value of the decimal M / 10^d, which is then
   what any correct JSON decoder reads.  That is repr's text too, except in
   rare cases where the nearest M is missed by a rounding of the product
   and more decimals are written: the value read back is the same. */
static char *ffm_write_float(ffm_buffer *buf, char *out, PyObject *number)
{
    double value = PyFloat_AS_DOUBLE(number), magnitude = fabs(value), scaled;
    unsigned long long m;
    int decimals;
    char digits[2 * FFM_SHORT];
    char *end = digits + FFM_SHORT, *p, *text;

    if (!isfinite(value))
        return NULL;
    /* Outside [1e-4, 2^53) repr uses an exponent or M would not be exact. */
    if (magnitude >= 1e-4 && magnitude < FFM_TWO_TO_53) {
        for (decimals = 0; decimals < 18; decimals++) {
            scaled = magnitude * ffm_powers_of_ten[decimals];
            if (scaled >= FFM_TWO_TO_53)
                break;
            m = (unsigned long long)(scaled + 0.5);
            if ((double)m / ffm_powers_of_ten[decimals] != magnitude)
                continue;
            p = end;
            if (decimals == 0) {
                p -= 2;
                memcpy(p, ".0", 2);
                p = ffm_digits_before(p, m);
            } else {
                unsigned long long scale = ffm_integer_powers_of_ten[decimals];

                p = ffm_digits_before(end, m % scale);
                while (end - p < decimals)
                    *--p = '0';
                *--p = '.';
                p = ffm_digits_before(p, m / scale);
            }
            if (value < 0)
                *--p = '-';
            return ffm_write_short(buf, out, p, end);
        }
    }
    text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL)
        return NULL;
    out = ffm_write_raw(buf, out, text, strlen(text));
    PyMem_Free(text);
    return out;
}

/* ---- containers ---------------------------------------------------------- */

static char *ffm_write_any(ffm_buffer *buf, char *out, PyObject *obj, int depth);

/* The values that need no recursion, or NULL (and no exception) for others. */
static inline char *ffm_write_leaf(ffm_buffer *buf, char *out, PyObject *obj,
                                   PyTypeObject *kind)
{
    if (kind == &PyUnicode_Type)
        return ffm_write_text(buf, out, obj);
    if (kind == &PyLong_Type)
        return ffm_write_int(buf, out, obj);
    if (obj == Py_True)
        return ffm_write_raw(buf, out, "true", 4);
    if (obj == Py_False)
        return ffm_write_raw(buf, out, "false", 5);
    if (obj == Py_None)
        return ffm_write_raw(buf, out, "null", 4);
    if (kind == &PyFloat_Type)
        return ffm_write_float(buf, out, obj);
    return NULL;
}

static inline char *ffm_write_member(ffm_buffer *buf, char *out, PyObject *obj, int depth)
{
    PyTypeObject *kind = Py_TYPE(obj);

    if (kind == &PyUnicode_Type)    /* the commonest value, checked first and inline */
        return ffm_write_text(buf, out, obj);
    if (kind == &PyDict_Type || kind == &PyList_Type || kind == &PyTuple_Type)
        return ffm_write_any(buf, out, obj, depth);
    return ffm_write_leaf(buf, out, obj, kind);
}

static char *ffm_write_array(ffm_buffer *buf, char *out, PyObject **items, Py_ssize_t n,
                             int depth)
{
    Py_ssize_t k;

    out = ffm_room(buf, out, 3);
    if (out == NULL)
        return NULL;
    *out++ = '[';
    for (k = 0; k < n; k++) {
        out = ffm_write_member(buf, out, items[k], depth);
        if (out == NULL)
            return NULL;
        *out++ = ',';
    }
    if (n > 0)
        out--;    /* the last ',' */
    out = ffm_room(buf, out, 2);
    if (out == NULL)
        return NULL;
    *out++ = ']';
    return out;
}

/* One "key":value of an object, and the ',' after it. */
static inline char *ffm_write_pair(ffm_buffer *buf, char *out, PyObject *key, PyObject *value,
                                   int depth)
{
    if (!PyUnicode_CheckExact(key))
        return NULL;
    out = ffm_write_text(buf, out, key);
    if (out == NULL)
        return NULL;
    *out++ = ':';
    out = ffm_write_member(buf, out, value, depth);
    if (out == NULL)
        return NULL;
    *out++ = ',';
    return out;
}

/* Walking a dict.  PyDict_Next costs more than writing the pair it returns
   (a call into libpython and checks made for any caller, for every item:
   a third of the whole body's time on the corpus).  CPython 3.11 to 3.13
   lay out a dict that is not split, whose keys are all str, as an array of
   (key, value) entries in insertion order after the hash index, a removed
   item leaving a NULL value; that array is read directly here.  The layout
   is private to CPython, so this is only compiled for those versions, and
   ffm_check_dict_layout() compares it with PyDict_Next at import: if they
   ever disagree, every dict goes through PyDict_Next. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
#define FFM_DICT_LAYOUT 1

typedef struct {
    Py_ssize_t refcount;
    uint8_t log2_size;
    uint8_t log2_index_bytes;     /* the index takes 2^this bytes; the entries follow */
    uint8_t kind;                 /* 0: any keys (entries carry hashes); else str keys */
    uint32_t version;
    Py_ssize_t usable;
    Py_ssize_t entries_used;      /* entries written so far, removed ones included */
    char index[];
} ffm_dict_keys;

typedef struct {
    PyObject *key;
    PyObject *value;              /* NULL once removed */
} ffm_dict_entry;

static int ffm_dict_layout_known = 0;

/* The entries of `dict`, or NULL when it must be walked with PyDict_Next. */
static inline ffm_dict_entry *ffm_dict_entries(PyObject *dict, Py_ssize_t *count)
{
    PyDictObject *table = (PyDictObject *)dict;
    ffm_dict_keys *keys = (ffm_dict_keys *)table->ma_keys;

    if (!ffm_dict_layout_known || table->ma_values != NULL || keys->kind == 0)
        return NULL;
    *count = keys->entries_used;
    return (ffm_dict_entry *)(keys->index + ((size_t)1 << keys->log2_index_bytes));
}

/* 1 when reading the entries gives what PyDict_Next gives, on dicts of a
   few sizes (index entries of 1 and 2 bytes) with removed items; then the
   direct walk is used.  Only pointers are compared, nothing read through
   them.  -1 with an exception set when the test dicts cannot be made. */
static int ffm_check_dict_layout(void)
{
    static const int sizes[] = {0, 1, 5, 40, 300};
    int verdict = 1;
    size_t s;

    ffm_dict_layout_known = 1;
    for (s = 0; s < sizeof sizes / sizeof sizes[0] && verdict == 1; s++) {
        PyObject *dict = PyDict_New(), *key, *value;
        Py_ssize_t k, pos = 0, next = 0, count = 0;
        ffm_dict_entry *entries;

        if (dict == NULL)
            return -1;
        for (k = 0; k < sizes[s]; k++) {
            PyObject *name = PyUnicode_FromFormat("key%zd", k);
            int rc = name == NULL ? -1 : PyDict_SetItem(dict, name, name);

            if (rc == 0 && k % 3 == 1)
                rc = PyDict_DelItem(dict, name);
            Py_XDECREF(name);
            if (rc < 0) {
                Py_DECREF(dict);
                return -1;
            }
        }
        entries = ffm_dict_entries(dict, &count);
        if (sizes[s] > 0 && entries == NULL)
            verdict = 0;
        while (verdict == 1 && PyDict_Next(dict, &pos, &key, &value)) {
            while (next < count && entries[next].value == NULL)
                next++;
            if (next >= count || entries[next].key != key || entries[next].value != value)
                verdict = 0;
            next++;
        }
        while (verdict == 1 && entries != NULL && next < count)
            if (entries[next++].value != NULL)
                verdict = 0;
        Py_DECREF(dict);
    }
    ffm_dict_layout_known = verdict;
    return verdict;
}
#else
static int ffm_check_dict_layout(void)
{
    return 0;
}
#endif

static char *ffm_write_object(ffm_buffer *buf, char *out, PyObject *dict, int depth)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
#ifdef FFM_DICT_LAYOUT
    Py_ssize_t count, k;
    ffm_dict_entry *entries;
#endif

    out = ffm_room(buf, out, 3);
    if (out == NULL)
        return NULL;
    *out++ = '{';
#ifdef FFM_DICT_LAYOUT
    entries = ffm_dict_entries(dict, &count);
    if (entries != NULL) {
        for (k = 0; k < count && out != NULL; k++) {
            if (entries[k].value != NULL)
                out = ffm_write_pair(buf, out, entries[k].key, entries[k].value, depth);
        }
    } else
#endif
    {
        while (out != NULL && PyDict_Next(dict, &pos, &key, &value))
            out = ffm_write_pair(buf, out, key, value, depth);
    }
    if (out == NULL)
        return NULL;
    if (out[-1] == ',')
        out--;    /* the last ',' */
    out = ffm_room(buf, out, 2);
    if (out == NULL)
        return NULL;
    *out++ = '}';
    return out;
}

static char *ffm_write_any(ffm_buffer *buf, char *out, PyObject *obj, int depth)
{
    PyTypeObject *kind = Py_TYPE(obj);

    if (kind == &PyDict_Type || kind == &PyList_Type || kind == &PyTuple_Type) {
        if (depth <= 0)
            return NULL;
        if (kind == &PyDict_Type)
            return ffm_write_object(buf, out, obj, depth - 1);
        return ffm_write_array(buf, out, PySequence_Fast_ITEMS(obj),
                               PySequence_Fast_GET_SIZE(obj), depth - 1);
    }
    return ffm_write_leaf(buf, out, obj, kind);
}

/* Appends the JSON of `obj` to `buf`: FFM_WROTE, FFM_NOT_PLAIN (the bytes
   past the buffer's size are then garbage), or -1 with MemoryError set.
   Containers nest at most `depth` deep. */
static int ffm_write_value(ffm_buffer *buf, PyObject *obj, int depth)
{
    char *out;

    if (ffm_reserve(buf, 1) < 0)
        return -1;
    out = ffm_write_any(buf, buf->data + buf->size, obj, depth);
    if (out == NULL)
        return PyErr_Occurred() ? -1 : FFM_NOT_PLAIN;
    buf->size = (size_t)(out - buf->data);
    return FFM_WROTE;
}

#endif /* FASTFEDMSG_JSON_WRITER_H */
