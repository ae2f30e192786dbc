/* deployguard._rowhash: the SQLite row hash of deployguard.fingerprint, in C.
 *
 * sqlite_row_hash(*values) in fingerprint.py is
 *     int.from_bytes(blake2b(marshal.dumps(values, 2), digest_size=8).digest(), "big", signed=True)
 * and this module computes the same number without building the marshal bytes or a hashlib
 * object: it streams marshal format 2 of the tuple straight into BLAKE2b (RFC 7693, written
 * here from the RFC). It exists because the Python call per row dominated fingerprints on
 * SQLite, and Python's sqlite3 here cannot load SQLite extensions.
 *
 * Only the exact types SQLite hands Python are encoded here: None, int (signed 64-bit), float,
 * str and bytes. Anything else (bool, subclasses, ints beyond 64 bits, lengths beyond 2**31-1)
 * goes through marshal.dumps itself, so the result, or the error, is marshal's.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* ---- BLAKE2b, RFC 7693, unkeyed, 8-byte digest ---------------------------------------- */

#define BLAKE2B_BLOCK 128
#define DIGEST_SIZE 8

static const uint64_t blake2b_iv[8] = {
    0x6A09E667F3BCC908ULL, 0xBB67AE8584CAA73BULL, 0x3C6EF372FE94F82BULL, 0xA54FF53A5F1D36F1ULL,
    0x510E527FADE682D1ULL, 0x9B05688C2B3E6C1FULL, 0x1F83D9ABFB41BD6BULL, 0x5BE0CD19137E2179ULL,
};

/* RFC 7693 section 2.7; rounds 10 and 11 reuse rows 0 and 1. */
static const uint8_t blake2b_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

typedef struct {
    uint64_t h[8];
    uint64_t t[2];                 /* bytes compressed so far, 128-bit */
    uint8_t buf[BLAKE2B_BLOCK];    /* pending input, never compressed until more arrives */
    size_t c;                      /* bytes in buf */
} blake2b_state;

static inline uint64_t rotr64(uint64_t x, unsigned n) { return (x >> n) | (x << (64 - n)); }

static inline uint64_t load64_le(const uint8_t *p)
{
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) | ((uint64_t)p[3] << 24) |
           ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) | ((uint64_t)p[6] << 48) |
           ((uint64_t)p[7] << 56);
}

#define G(a, b, c, d, x, y)                \
    do {                                   \
        v[a] = v[a] + v[b] + (x);          \
        v[d] = rotr64(v[d] ^ v[a], 32);    \
        v[c] = v[c] + v[d];                \
        v[b] = rotr64(v[b] ^ v[c], 24);    \
        v[a] = v[a] + v[b] + (y);          \
        v[d] = rotr64(v[d] ^ v[a], 16);    \
        v[c] = v[c] + v[d];                \
        v[b] = rotr64(v[b] ^ v[c], 63);    \
    } while (0)

static void blake2b_compress(blake2b_state *S, int last)
{
    uint64_t v[16], m[16];
    int i;

    for (i = 0; i < 8; i++) {
        v[i] = S->h[i];
        v[i + 8] = blake2b_iv[i];
    }
    v[12] ^= S->t[0];
    v[13] ^= S->t[1];
    if (last)
        v[14] = ~v[14];
    for (i = 0; i < 16; i++)
        m[i] = load64_le(S->buf + 8 * i);
    for (i = 0; i < 12; i++) {
        const uint8_t *s = blake2b_sigma[i];
        G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (i = 0; i < 8; i++)
        S->h[i] ^= v[i] ^ v[i + 8];
}

static void blake2b_init(blake2b_state *S)
{
    memcpy(S->h, blake2b_iv, sizeof(S->h));
    /* Parameter block: digest length 8, key length 0, fanout 1, depth 1. */
    S->h[0] ^= 0x01010000ULL ^ DIGEST_SIZE;
    S->t[0] = S->t[1] = 0;
    S->c = 0;
}

static void blake2b_counter_add(blake2b_state *S, uint64_t n)
{
    S->t[0] += n;
    if (S->t[0] < n)
        S->t[1]++;
}

static void blake2b_update(blake2b_state *S, const void *data, size_t len)
{
    const uint8_t *in = (const uint8_t *)data;

    while (len > 0) {
        size_t take;
        if (S->c == BLAKE2B_BLOCK) {
            /* More input follows, so the full buffer is not the last block. */
            blake2b_counter_add(S, BLAKE2B_BLOCK);
            blake2b_compress(S, 0);
            S->c = 0;
        }
        take = BLAKE2B_BLOCK - S->c;
        if (take > len)
            take = len;
        memcpy(S->buf + S->c, in, take);
        S->c += take;
        in += take;
        len -= take;
    }
}

/* The 8-byte digest read as a big-endian signed integer, as fingerprint.py reads it. */
static int64_t blake2b_final_signed(blake2b_state *S)
{
    uint64_t h0, be = 0;
    int i;

    blake2b_counter_add(S, S->c);
    memset(S->buf + S->c, 0, BLAKE2B_BLOCK - S->c);
    blake2b_compress(S, 1);
    h0 = S->h[0]; /* the digest is h[0]'s 8 bytes, little-endian */
    for (i = 0; i < 8; i++) {
        be = (be << 8) | (h0 & 0xff);
        h0 >>= 8;
    }
    return (int64_t)be;
}

/* ---- marshal format 2, streamed into the hash ------------------------------------------ */

static void put_byte(blake2b_state *S, uint8_t b) { blake2b_update(S, &b, 1); }

static void put_int32(blake2b_state *S, int32_t x)
{
    uint32_t u = (uint32_t)x;
    uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    blake2b_update(S, b, 4);
}

static void put_counted(blake2b_state *S, uint8_t type, const char *data, Py_ssize_t len)
{
    put_byte(S, type);
    put_int32(S, (int32_t)len);
    blake2b_update(S, data, (size_t)len);
}

/* marshal.c's w_PyLong: the magnitude in 15-bit digits, least significant first, the count
 * signed like the number. Only reached for |x| >= 2**31, so the count is never 0. */
static void put_long(blake2b_state *S, int64_t x)
{
    uint64_t mag = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    uint8_t digits[10];
    int n = 0;

    while (mag != 0) {
        uint16_t d = (uint16_t)(mag & 0x7fff);
        digits[2 * n] = (uint8_t)d;
        digits[2 * n + 1] = (uint8_t)(d >> 8);
        mag >>= 15;
        n++;
    }
    put_byte(S, 'l');
    put_int32(S, x < 0 ? -n : n);
    blake2b_update(S, digits, (size_t)(2 * n));
}

#define ENCODED 0
#define NEEDS_MARSHAL 1 /* a value this module does not encode itself */
#define FAILED (-1)

static int put_value(blake2b_state *S, PyObject *v)
{
    if (v == Py_None) {
        put_byte(S, 'N');
        return ENCODED;
    }
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow)
            return NEEDS_MARSHAL;
        if (x == -1 && PyErr_Occurred())
            return FAILED;
        if (x >= INT32_MIN && x <= INT32_MAX) {
            put_byte(S, 'i');
            put_int32(S, (int32_t)x);
        }
        else {
            put_long(S, (int64_t)x);
        }
        return ENCODED;
    }
    if (PyFloat_CheckExact(v)) {
        /* PyFloat_Pack8 little-endian: the IEEE bits as they are, NaN payload and sign included. */
        double d = PyFloat_AS_DOUBLE(v);
        uint64_t bits;
        uint8_t b[9];
        int i;
        memcpy(&bits, &d, 8);
        b[0] = 'g';
        for (i = 1; i < 9; i++) {
            b[i] = (uint8_t)bits;
            bits >>= 8;
        }
        blake2b_update(S, b, 9);
        return ENCODED;
    }
    if (PyUnicode_CheckExact(v)) {
        PyObject *utf8;
        if (PyUnicode_READY(v) < 0)
            return FAILED;
        if (PyUnicode_IS_ASCII(v)) {
            Py_ssize_t len = PyUnicode_GET_LENGTH(v);
            if (len > INT32_MAX)
                return NEEDS_MARSHAL;
            put_counted(S, 'u', (const char *)PyUnicode_DATA(v), len);
            return ENCODED;
        }
        /* What marshal does: UTF-8 with lone surrogates passed through. */
        utf8 = PyUnicode_AsEncodedString(v, "utf8", "surrogatepass");
        if (utf8 == NULL)
            return FAILED;
        if (PyBytes_GET_SIZE(utf8) > INT32_MAX) {
            Py_DECREF(utf8);
            return NEEDS_MARSHAL;
        }
        put_counted(S, 'u', PyBytes_AS_STRING(utf8), PyBytes_GET_SIZE(utf8));
        Py_DECREF(utf8);
        return ENCODED;
    }
    if (PyBytes_CheckExact(v)) {
        if (PyBytes_GET_SIZE(v) > INT32_MAX)
            return NEEDS_MARSHAL;
        put_counted(S, 's', PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
        return ENCODED;
    }
    return NEEDS_MARSHAL;
}

/* The hash of marshal.dumps(values, 2) computed by marshal itself. */
static int hash_via_marshal(PyObject *values, int64_t *out)
{
    PyObject *marshal, *dumped;
    blake2b_state S;

    marshal = PyImport_ImportModule("marshal");
    if (marshal == NULL)
        return -1;
    dumped = PyObject_CallMethod(marshal, "dumps", "Oi", values, 2);
    Py_DECREF(marshal);
    if (dumped == NULL)
        return -1;
    if (!PyBytes_Check(dumped)) {
        Py_DECREF(dumped);
        PyErr_SetString(PyExc_TypeError, "marshal.dumps did not return bytes");
        return -1;
    }
    blake2b_init(&S);
    blake2b_update(&S, PyBytes_AS_STRING(dumped), (size_t)PyBytes_GET_SIZE(dumped));
    Py_DECREF(dumped);
    *out = blake2b_final_signed(&S);
    return 0;
}

/* The hash of the tuple `values`; 0 on success, -1 with an exception set. */
static int hash_row(PyObject *values, int64_t *out)
{
    blake2b_state S;
    Py_ssize_t i, n = PyTuple_GET_SIZE(values);

    blake2b_init(&S);
    put_byte(&S, '(');
    put_int32(&S, (int32_t)n);
    for (i = 0; i < n; i++) {
        int status = put_value(&S, PyTuple_GET_ITEM(values, i));
        if (status == FAILED)
            return -1;
        if (status == NEEDS_MARSHAL)
            return hash_via_marshal(values, out);
    }
    *out = blake2b_final_signed(&S);
    return 0;
}

/* ---- Python interface ------------------------------------------------------------------- */

/* METH_VARARGS on purpose: sqlite3 calls with a tuple, which then reaches us as it is. */
static PyObject *row_hash(PyObject *Py_UNUSED(module), PyObject *args)
{
    int64_t h;
    if (hash_row(args, &h) < 0)
        return NULL;
    return PyLong_FromLongLong((long long)h);
}

typedef struct {
    PyObject_HEAD
    uint64_t total; /* the sum of the row hashes modulo 2**64 */
} FingerprintAggregate;

static PyObject *aggregate_step(FingerprintAggregate *self, PyObject *args)
{
    int64_t h;
    if (hash_row(args, &h) < 0)
        return NULL;
    self->total += (uint64_t)h;
    Py_RETURN_NONE;
}

static PyObject *aggregate_finalize(FingerprintAggregate *self, PyObject *Py_UNUSED(ignored))
{
    return PyUnicode_FromFormat("%llu", (unsigned long long)self->total);
}

static PyMethodDef aggregate_methods[] = {
    {"step", (PyCFunction)aggregate_step, METH_VARARGS, "Add one row's hash to the sum."},
    {"finalize", (PyCFunction)aggregate_finalize, METH_NOARGS,
     "The sum of the rows' hashes modulo 2**64, as decimal text."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FingerprintAggregateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "deployguard._rowhash.FingerprintAggregate",
    .tp_doc = PyDoc_STR("SQLite aggregate: the sum of row_hash() over the rows, modulo 2**64, as text."),
    .tp_basicsize = sizeof(FingerprintAggregate),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_methods = aggregate_methods,
};

static PyMethodDef module_methods[] = {
    {"row_hash", (PyCFunction)row_hash, METH_VARARGS,
     "row_hash(*values) -> int: the signed 64-bit BLAKE2b hash of marshal.dumps(values, 2)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef rowhash_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "deployguard._rowhash",
    .m_doc = "deployguard.fingerprint's SQLite row hash and fingerprint aggregate, in C.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__rowhash(void)
{
    PyObject *module;

    if (PyType_Ready(&FingerprintAggregateType) < 0)
        return NULL;
    module = PyModule_Create(&rowhash_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&FingerprintAggregateType);
    if (PyModule_AddObject(module, "FingerprintAggregate", (PyObject *)&FingerprintAggregateType) < 0) {
        Py_DECREF(&FingerprintAggregateType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
