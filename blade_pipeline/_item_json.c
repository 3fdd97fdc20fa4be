/* Canonical item JSON + sha256 for Arrow columns, in one pass per row (see item_json.py).
 *
 * Writes the same bytes as DuckDB's to_json(struct_pack(...)) for the column types it takes
 * (strings, booleans, integers, floats, dates, timestamps without time zone, years 1-9999):
 * keys in the given order, no whitespace, yyjson's string escapes and shortest round-trip
 * doubles. Anything else raises Unsupported and the caller uses DuckDB. The GIL is released
 * while rows are encoded and hashed (OpenSSL's SHA-256, SHA extensions when the CPU has them).
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/sha.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum kind {
    K_UTF8 = 1, K_LARGE_UTF8, K_BOOL, K_INT8, K_INT16, K_INT32, K_INT64,
    K_FLOAT32, K_FLOAT64, K_DATE32, K_TIMESTAMP,
    K_DECIMAL_DOUBLE, /* decimal128 of precision <= 15: DuckDB writes it as a double */
    K_DECIMAL_TEXT    /* decimal128 of precision 16..38: DuckDB writes its exact digits */
};

typedef struct {
    const char *key;        /* "name": already escaped and quoted, with the colon */
    Py_ssize_t key_len;
    int kind;
    int64_t offset;         /* the array's slice offset, in elements */
    const uint8_t *validity; /* NULL: no nulls */
    const uint8_t *buf1;    /* values, or string offsets */
    const uint8_t *buf2;    /* string data */
    int64_t param;          /* timestamps: multiplier to microseconds; decimals: scale */
} column_t;

typedef struct {
    char *data;
    size_t len, cap;
} out_t;

static PyObject *Unsupported;

/* ---- an owned malloc'd block exposed through the buffer protocol (zero-copy to Arrow) ---- */
typedef struct {
    PyObject_HEAD
    void *mem;
    Py_ssize_t len;
} block_t;

static void block_dealloc(block_t *self) {
    free(self->mem);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int block_getbuffer(block_t *self, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)self, self->mem, self->len, 1, flags);
}

static PyBufferProcs block_as_buffer = {(getbufferproc)block_getbuffer, NULL};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "blade_pipeline._item_json.Block",
    .tp_basicsize = sizeof(block_t),
    .tp_dealloc = (destructor)block_dealloc,
    .tp_as_buffer = &block_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Memory written by encode(), readable through the buffer protocol.",
};

static PyObject *block_new(void *mem, Py_ssize_t len) {
    block_t *b = PyObject_New(block_t, &BlockType);
    if (b == NULL) {
        free(mem);
        return NULL;
    }
    b->mem = mem;
    b->len = len;
    return (PyObject *)b;
}

/* ---- output buffer ---- */
static int reserve(out_t *o, size_t extra) {
    if (o->len + extra <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : 1 << 16;
    while (cap < o->len + extra)
        cap += cap / 2;
    char *p = realloc(o->data, cap);
    if (p == NULL)
        return -1;
    o->data = p;
    o->cap = cap;
    return 0;
}

static inline void put(out_t *o, const char *s, size_t n) {
    memcpy(o->data + o->len, s, n);
    o->len += n;
}

/* ---- values ---- */
static const char HEX_UPPER[] = "0123456789ABCDEF";

static inline int needs_escape(uint8_t c) {
    return c < 0x20 || c == '"' || c == '\\';
}

/* Index of the first byte of s[i..n) that needs an escape, or n. */
static inline size_t next_escape(const uint8_t *s, size_t i, size_t n) {
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
    const __m128i below_space = _mm_set1_epi8(0x20 - 0x80), flip = _mm_set1_epi8((char)0x80);
    while (i < n) {
        size_t left = n - i;
        /* a short tail is read as 16 bytes only when that stays inside its memory page */
        if (left < 16 && ((uintptr_t)(s + i) & 4095) > 4096 - 16)
            break;
        __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
        __m128i hit = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
            _mm_cmplt_epi8(_mm_xor_si128(v, flip), below_space));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (left < 16)
            mask &= (1u << left) - 1;
        if (mask)
            return i + (size_t)__builtin_ctz(mask);
        if (left <= 16)
            return n;
        i += 16;
    }
#endif
    while (i < n && !needs_escape(s[i]))
        i++;
    return i;
}

/* yyjson's escapes: " \ and control characters; everything else (UTF-8 included) as is. */
static size_t escape_string(char *dst, const uint8_t *s, size_t n) {
    char *d = dst;
    *d++ = '"';
    size_t i = 0;
    for (;;) {
        size_t j = next_escape(s, i, n);
        memcpy(d, s + i, j - i);
        d += j - i;
        if (j == n)
            break;
        uint8_t c = s[j];
        i = j + 1;
        *d++ = '\\';
        switch (c) {
        case '"': *d++ = '"'; break;
        case '\\': *d++ = '\\'; break;
        case '\b': *d++ = 'b'; break;
        case '\f': *d++ = 'f'; break;
        case '\n': *d++ = 'n'; break;
        case '\r': *d++ = 'r'; break;
        case '\t': *d++ = 't'; break;
        default:
            memcpy(d, "u00", 3);
            d[3] = HEX_UPPER[c >> 4];
            d[4] = HEX_UPPER[c & 15];
            d += 5;
        }
    }
    *d++ = '"';
    return (size_t)(d - dst);
}

static size_t write_int(char *dst, int64_t v) {
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0)
        dst[len++] = '-';
    while (n)
        dst[len++] = tmp[--n];
    return len;
}

static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
                               1e11, 1e12, 1e13, 1e14, 1e15};

static int round_trips(double m, int k, double v) {
    return m / POW10[k] == v;
}

/* Shortest digits of v (> 0) that read back as v, as an integer m and a count k of
 * fractional digits, when they are found without doubt by exact double arithmetic
 * (v = m / 10^k, no other candidate with k digits, none with k - 1). 0: use dtoa. */
static int short_decimal(double v, int64_t *m_out, int *k_out) {
    for (int k = 0; k <= 9; k++) {
        double p = v * POW10[k];
        if (p >= 9007199254740992.0)
            return 0;
        double m = floor(p);
        if (m != p || m < 1 || !round_trips(m, k, v))
            continue;
        if (k > 0) {
            int64_t mi = (int64_t)m;
            if (mi % 10 == 0)
                return 0;
            if (round_trips(m - 1, k, v) || round_trips(m + 1, k, v))
                return 0;
            double a = floor(m / 10);
            for (double c = a - 1; c <= a + 2; c += 1)
                if (c >= 0 && round_trips(c, k - 1, v))
                    return 0;
        }
        *m_out = (int64_t)m;
        *k_out = k;
        return 1;
    }
    return 0;
}

/* yyjson's layout of a shortest decimal: digits d1..dn times 10^(point - n). Fixed notation
 * (with ".0" when integral) for -6 <= exponent <= 20, else d[.ddd]e[-]x. */
static size_t layout_double(char *dst, int negative, const char *digits, int n, int point) {
    char *d = dst;
    int exp10 = point - 1;
    if (negative)
        *d++ = '-';
    if (exp10 >= -6 && exp10 <= 20) {
        if (point <= 0) {
            *d++ = '0';
            *d++ = '.';
            for (int i = 0; i < -point; i++)
                *d++ = '0';
            memcpy(d, digits, n);
            d += n;
        } else if (point >= n) {
            memcpy(d, digits, n);
            d += n;
            for (int i = n; i < point; i++)
                *d++ = '0';
            *d++ = '.';
            *d++ = '0';
        } else {
            memcpy(d, digits, point);
            d += point;
            *d++ = '.';
            memcpy(d, digits + point, n - point);
            d += n - point;
        }
    } else {
        *d++ = digits[0];
        if (n > 1) {
            *d++ = '.';
            memcpy(d, digits + 1, n - 1);
            d += n - 1;
        }
        *d++ = 'e';
        d += write_int(d, exp10);
    }
    return (size_t)(d - dst);
}

/* Python's repr() digits (David Gay's shortest round trip), for doubles the fast path leaves. */
static int dtoa_digits(double v, char *digits, int *n, int *point) {
    PyGILState_STATE gil = PyGILState_Ensure();
    char *r = PyOS_double_to_string(v, 'r', 0, 0, NULL);
    PyGILState_Release(gil);
    if (r == NULL)
        return -1;
    int count = 0, before_point = -1, exp10 = 0;
    const char *p = r;
    for (; *p && *p != 'e'; p++) {
        if (*p == '.')
            before_point = count;
        else if (*p >= '0' && *p <= '9')
            digits[count++] = *p;
    }
    if (*p == 'e')
        exp10 = atoi(p + 1);
    if (before_point < 0)
        before_point = count;
    /* drop leading zeros (0.00123) and trailing zeros (1.0, 100) */
    int lead = 0;
    while (lead < count - 1 && digits[lead] == '0')
        lead++;
    int pt = before_point - lead + exp10;
    memmove(digits, digits + lead, count - lead);
    count -= lead;
    while (count > 1 && digits[count - 1] == '0')
        count--;
    gil = PyGILState_Ensure();
    PyMem_Free(r);
    PyGILState_Release(gil);
    *n = count;
    *point = pt;
    return 0;
}

static int write_double(char *dst, size_t *len, double v) {
    if (isnan(v)) {
        memcpy(dst, "NaN", 3);
        *len = 3;
        return 0;
    }
    if (isinf(v)) {
        *len = v < 0 ? 9 : 8;
        memcpy(dst, v < 0 ? "-Infinity" : "Infinity", *len);
        return 0;
    }
    int negative = signbit(v) != 0;
    double a = fabs(v);
    char digits[40];
    int n, point;
    int64_t m;
    int k;
    if (a == 0) {
        digits[0] = '0';
        n = 1;
        point = 1;
    } else if (short_decimal(a, &m, &k)) {
        n = (int)write_int(digits, m);
        point = n - k;
        while (n > 1 && digits[n - 1] == '0')
            n--;
    } else if (dtoa_digits(a, digits, &n, &point) < 0) {
        return -1;
    }
    *len = layout_double(dst, negative, digits, n, point);
    return 0;
}

/* A decimal's exact digits as DuckDB prints a wide one: sign, integer part (at least "0"),
 * then '.' and exactly ``scale`` fractional digits (none when scale is 0). */
static size_t write_decimal_text(char *dst, __int128 v, int scale) {
    char tmp[48];
    int n = 0;
    unsigned __int128 u = v < 0 ? (unsigned __int128)0 - (unsigned __int128)v
                                : (unsigned __int128)v;
    do {
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    while (n < scale + 1)
        tmp[n++] = '0';
    size_t len = 0;
    if (v < 0)
        dst[len++] = '-';
    while (n > scale)
        dst[len++] = tmp[--n];
    if (scale > 0) {
        dst[len++] = '.';
        while (n)
            dst[len++] = tmp[--n];
    }
    return len;
}

/* days since 1970-01-01 -> civil date (Howard Hinnant's algorithm) */
static void civil(int64_t days, int64_t *y, int *mo, int *d) {
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *mo = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*mo <= 2);
}

static inline void two(char *d, int v) {
    d[0] = (char)('0' + v / 10);
    d[1] = (char)('0' + v % 10);
}

/* "YYYY-MM-DD"; -1 outside years 1..9999 (DuckDB writes those differently). */
static int write_date(char *d, int64_t days) {
    int64_t y;
    int mo, day;
    civil(days, &y, &mo, &day);
    if (y < 1 || y > 9999)
        return -1;
    two(d, (int)(y / 100));
    two(d + 2, (int)(y % 100));
    d[4] = '-';
    two(d + 5, mo);
    d[7] = '-';
    two(d + 8, day);
    return 10;
}

/* "YYYY-MM-DD HH:MM:SS[.ffffff without trailing zeros]" */
static int write_timestamp(char *d, int64_t us) {
    int64_t days = us >= 0 ? us / 86400000000LL : -((-us + 86400000000LL - 1) / 86400000000LL);
    int64_t rest = us - days * 86400000000LL;
    if (write_date(d, days) < 0)
        return -1;
    int64_t secs = rest / 1000000, frac = rest % 1000000;
    d[10] = ' ';
    two(d + 11, (int)(secs / 3600));
    d[13] = ':';
    two(d + 14, (int)(secs / 60 % 60));
    d[16] = ':';
    two(d + 17, (int)(secs % 60));
    int len = 19;
    if (frac) {
        d[len++] = '.';
        int width = 6;
        while (frac % 10 == 0) {
            frac /= 10;
            width--;
        }
        for (int i = width - 1; i >= 0; i--) {
            d[len + i] = (char)('0' + frac % 10);
            frac /= 10;
        }
        len += width;
    }
    return len;
}

static inline int bit(const uint8_t *bits, int64_t i) {
    return (bits[i >> 3] >> (i & 7)) & 1;
}

/* One row's value of a column; 0 ok, -1 no memory or Python error, -2 unsupported value. */
static int write_value(out_t *o, const column_t *c, int64_t row) {
    int64_t i = row + c->offset;
    if (c->validity && !bit(c->validity, i)) {
        if (reserve(o, 4))
            return -1;
        put(o, "null", 4);
        return 0;
    }
    size_t n;
    switch (c->kind) {
    case K_UTF8:
    case K_LARGE_UTF8: {
        int64_t start, end;
        if (c->kind == K_UTF8) {
            start = ((const int32_t *)c->buf1)[i];
            end = ((const int32_t *)c->buf1)[i + 1];
        } else {
            start = ((const int64_t *)c->buf1)[i];
            end = ((const int64_t *)c->buf1)[i + 1];
        }
        if (reserve(o, (size_t)(end - start) * 6 + 2))
            return -1;
        o->len += escape_string(o->data + o->len, c->buf2 + start, (size_t)(end - start));
        return 0;
    }
    default:
        break;
    }
    if (reserve(o, 64))
        return -1;
    char *d = o->data + o->len;
    switch (c->kind) {
    case K_BOOL:
        n = bit(c->buf1, i) ? 4 : 5;
        memcpy(d, n == 4 ? "true" : "false", n);
        break;
    case K_INT8: n = write_int(d, ((const int8_t *)c->buf1)[i]); break;
    case K_INT16: n = write_int(d, ((const int16_t *)c->buf1)[i]); break;
    case K_INT32: n = write_int(d, ((const int32_t *)c->buf1)[i]); break;
    case K_INT64: n = write_int(d, ((const int64_t *)c->buf1)[i]); break;
    case K_FLOAT32:
        if (write_double(d, &n, (double)((const float *)c->buf1)[i]) < 0)
            return -1;
        break;
    case K_FLOAT64:
        if (write_double(d, &n, ((const double *)c->buf1)[i]) < 0)
            return -1;
        break;
    case K_DATE32: {
        d[0] = '"';
        int len = write_date(d + 1, ((const int32_t *)c->buf1)[i]);
        if (len < 0)
            return -2;
        d[len + 1] = '"';
        n = (size_t)len + 2;
        break;
    }
    case K_DECIMAL_DOUBLE: {
        /* DuckDB casts to DOUBLE (value / 10^scale, both exact below 2^53) */
        int64_t lo, hi;
        memcpy(&lo, c->buf1 + 16 * i, 8);
        memcpy(&hi, c->buf1 + 16 * i + 8, 8);
        if (hi != (lo < 0 ? -1 : 0) || lo > 999999999999999LL || lo < -999999999999999LL)
            return -2;
        if (write_double(d, &n, (double)lo / POW10[c->param]) < 0)
            return -1;
        break;
    }
    case K_DECIMAL_TEXT: {
        __int128 v;
        memcpy(&v, c->buf1 + 16 * i, 16);
        n = write_decimal_text(d, v, (int)c->param);
        break;
    }
    case K_TIMESTAMP: {
        int64_t raw = ((const int64_t *)c->buf1)[i];
        if (raw > INT64_MAX / c->param || raw < INT64_MIN / c->param)
            return -2;
        d[0] = '"';
        int len = write_timestamp(d + 1, raw * c->param);
        if (len < 0)
            return -2;
        d[len + 1] = '"';
        n = (size_t)len + 2;
        break;
    }
    default:
        return -2;
    }
    o->len += n;
    return 0;
}

/* Bytes the rows take when no string needs escapes: one allocation for the common case. */
static size_t estimate(const column_t *cols, Py_ssize_t ncols, Py_ssize_t rows) {
    size_t total = (size_t)rows * 2;
    for (Py_ssize_t j = 0; j < ncols; j++) {
        const column_t *c = &cols[j];
        size_t per_row = (size_t)c->key_len + 1;
        if (c->kind == K_UTF8) {
            const int32_t *off = (const int32_t *)c->buf1 + c->offset;
            total += (size_t)(off[rows] - off[0]);
            per_row += 2;
        } else if (c->kind == K_LARGE_UTF8) {
            const int64_t *off = (const int64_t *)c->buf1 + c->offset;
            total += (size_t)(off[rows] - off[0]);
            per_row += 2;
        } else {
            per_row += c->kind == K_TIMESTAMP ? 28 : c->kind == K_DATE32 ? 12
                     : c->kind == K_DECIMAL_TEXT ? 42 : 24;
        }
        total += per_row * (size_t)rows;
    }
    return total;
}

/* ---- encode() ---- */
static int parse_columns(PyObject *specs, column_t *cols, Py_ssize_t ncols) {
    for (Py_ssize_t j = 0; j < ncols; j++) {
        PyObject *spec = PyList_GET_ITEM(specs, j);
        unsigned long long validity, buf1, buf2;
        column_t *c = &cols[j];
        if (!PyArg_ParseTuple(spec, "y#iLKKKL", &c->key, &c->key_len, &c->kind, &c->offset,
                              &validity, &buf1, &buf2, &c->param))
            return -1;
        c->validity = (const uint8_t *)(uintptr_t)validity;
        c->buf1 = (const uint8_t *)(uintptr_t)buf1;
        c->buf2 = (const uint8_t *)(uintptr_t)buf2;
        if (c->kind < K_UTF8 || c->kind > K_DECIMAL_TEXT || c->buf1 == NULL ||
            ((c->kind == K_UTF8 || c->kind == K_LARGE_UTF8) && c->buf2 == NULL) ||
            (c->kind == K_TIMESTAMP && c->param <= 0) ||
            (c->kind == K_DECIMAL_DOUBLE && (c->param < 0 || c->param > 15)) ||
            (c->kind == K_DECIMAL_TEXT && (c->param < 0 || c->param > 37))) {
            PyErr_Format(PyExc_ValueError, "bad column spec %zd", j);
            return -1;
        }
    }
    return 0;
}

static const char HEX_LOWER[] = "0123456789abcdef";

static PyObject *encode(PyObject *self, PyObject *args) {
    Py_ssize_t rows;
    PyObject *specs;
    unsigned long long keep_addr, keep_valid_addr;
    long long keep_offset;
    if (!PyArg_ParseTuple(args, "nO!KKL", &rows, &PyList_Type, &specs, &keep_addr,
                          &keep_valid_addr, &keep_offset))
        return NULL;
    Py_ssize_t ncols = PyList_GET_SIZE(specs);
    column_t *cols = calloc((size_t)(ncols ? ncols : 1), sizeof(column_t));
    if (cols == NULL)
        return PyErr_NoMemory();
    if (parse_columns(specs, cols, ncols) < 0) {
        free(cols);
        return NULL;
    }
    const uint8_t *keep = (const uint8_t *)(uintptr_t)keep_addr;
    const uint8_t *keep_valid = (const uint8_t *)(uintptr_t)keep_valid_addr;
    int64_t *offsets = malloc(sizeof(int64_t) * (size_t)(rows + 1));
    char *hashes = malloc((size_t)(rows ? rows : 1) * 64);
    out_t o = {NULL, 0, 0};
    int status = (offsets && hashes) ? 0 : -1;
    Py_ssize_t kept = 0;
    Py_BEGIN_ALLOW_THREADS
    if (status == 0) {
        offsets[0] = 0;
        status = reserve(&o, estimate(cols, ncols, rows));
    }
    for (Py_ssize_t r = 0; r < rows && status == 0; r++) {
        if (keep) {
            int64_t k = r + keep_offset;
            if (!bit(keep, k) || (keep_valid && !bit(keep_valid, k)))
                continue;
        }
        size_t start = o.len;
        if (reserve(&o, 1)) {
            status = -1;
            break;
        }
        o.data[o.len++] = '{';
        for (Py_ssize_t j = 0; j < ncols && status == 0; j++) {
            const column_t *c = &cols[j];
            if (reserve(&o, (size_t)c->key_len + 1)) {
                status = -1;
                break;
            }
            if (j)
                o.data[o.len++] = ',';
            put(&o, c->key, (size_t)c->key_len);
            status = write_value(&o, c, r);
        }
        if (status || reserve(&o, 1)) {
            status = status ? status : -1;
            break;
        }
        o.data[o.len++] = '}';
        unsigned char md[SHA256_DIGEST_LENGTH];
        SHA256_CTX sha; /* the low-level calls: SHA256() would fetch an EVP method per row */
        SHA256_Init(&sha);
        SHA256_Update(&sha, o.data + start, o.len - start);
        SHA256_Final(md, &sha);
        char *h = hashes + kept * 64;
        for (int b = 0; b < SHA256_DIGEST_LENGTH; b++) {
            h[2 * b] = HEX_LOWER[md[b] >> 4];
            h[2 * b + 1] = HEX_LOWER[md[b] & 15];
        }
        kept++;
        offsets[kept] = (int64_t)o.len;
    }
    Py_END_ALLOW_THREADS
    free(cols);
    if (status != 0) {
        free(offsets);
        free(hashes);
        free(o.data);
        if (status == -2)
            PyErr_SetString(Unsupported, "a value outside what the kernel writes like DuckDB");
        else if (!PyErr_Occurred())
            PyErr_NoMemory();
        return NULL;
    }
    PyObject *off = block_new(offsets, (Py_ssize_t)sizeof(int64_t) * (kept + 1));
    PyObject *data = block_new(o.data ? o.data : malloc(1), (Py_ssize_t)o.len);
    PyObject *hex = block_new(hashes, (Py_ssize_t)kept * 64);
    if (off == NULL || data == NULL || hex == NULL) {
        Py_XDECREF(off);
        Py_XDECREF(data);
        Py_XDECREF(hex);
        return NULL;
    }
    return Py_BuildValue("nNNN", kept, off, data, hex);
}

static PyObject *escape_key(PyObject *self, PyObject *arg) {
    const char *s;
    Py_ssize_t n;
    if (!PyArg_Parse(arg, "y#", &s, &n))
        return NULL;
    char *buf = malloc((size_t)n * 6 + 3);
    if (buf == NULL)
        return PyErr_NoMemory();
    size_t len = escape_string(buf, (const uint8_t *)s, (size_t)n);
    buf[len++] = ':';
    PyObject *result = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
    free(buf);
    return result;
}

static PyMethodDef METHODS[] = {
    {"encode", encode, METH_VARARGS,
     "encode(rows, columns, keep, keep_validity, keep_offset) -> (kept, offsets, data, hex)"},
    {"escape_key", escape_key, METH_O, "escape_key(utf8) -> b'\"name\":'"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "_item_json",
    "Canonical item JSON + sha256 from Arrow buffers (see blade_pipeline.item_json).", -1,
    METHODS,
};

PyMODINIT_FUNC PyInit__item_json(void) {
    if (PyType_Ready(&BlockType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&MODULE);
    if (m == NULL)
        return NULL;
    Unsupported = PyErr_NewException("blade_pipeline._item_json.Unsupported", PyExc_ValueError,
                                     NULL);
    if (Unsupported == NULL || PyModule_AddObjectRef(m, "Unsupported", Unsupported) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    /* the column kinds encode() takes, for item_json.py */
    static const struct { const char *name; int kind; } KINDS[] = {
        {"UTF8", K_UTF8}, {"LARGE_UTF8", K_LARGE_UTF8}, {"BOOL", K_BOOL}, {"INT8", K_INT8},
        {"INT16", K_INT16}, {"INT32", K_INT32}, {"INT64", K_INT64}, {"FLOAT32", K_FLOAT32},
        {"FLOAT64", K_FLOAT64}, {"DATE32", K_DATE32}, {"TIMESTAMP", K_TIMESTAMP},
        {"DECIMAL_DOUBLE", K_DECIMAL_DOUBLE}, {"DECIMAL_TEXT", K_DECIMAL_TEXT},
    };
    for (size_t i = 0; i < sizeof(KINDS) / sizeof(KINDS[0]); i++) {
        if (PyModule_AddIntConstant(m, KINDS[i].name, KINDS[i].kind) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
