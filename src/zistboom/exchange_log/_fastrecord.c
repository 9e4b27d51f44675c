/* Native fast path of zistboom.exchange_log.record.encode_packed (see record.py).
 *
 * Why C: the writer process spends ~15-20 us of interpreter time per record building the record
 * dict, canonicalising headers, hashing and serialising; the same work here is ~1-2 us. It is the
 * project's core format, so it is written here rather than taken from a library.
 *
 * Contract: encode_packed(t) takes a pack_exchange() tuple and returns the same Encoded tuple that
 * record.encode_packed(t) returns, byte for byte (tests/exchange_log/test_fastrecord.py checks it
 * on generated exchanges), or None when the tuple is outside the common case this file handles
 * (kept bodies, non-ASCII header values or method, non-bytes header names, ints beyond 64 bits,
 * non-finite latencies, years outside 1..9999, unexpected types, ...). The caller then uses the
 * Python encoder, which is the definition. This function never raises for data it is given (only
 * for memory exhaustion).
 *
 * SHA-256 is OpenSSL's (libcrypto, the library Python's hashlib uses); nothing cryptographic is
 * implemented here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>
#include <openssl/evp.h>

static PyTypeObject *encoded_type = NULL; /* record.Encoded (a NamedTuple: tuple layout) */
static PyObject *str_exchange = NULL;     /* "exchange" */
static EVP_MD_CTX *md_ctx = NULL;          /* used only while holding the GIL */

/* ---- growable buffer ------------------------------------------------------------------------ */

typedef struct {
    char *p;
    Py_ssize_t n, cap;
    int oom;
} buf_t;

static void b_init(buf_t *b, char *stack, Py_ssize_t cap) { b->p = stack; b->n = 0; b->cap = cap; b->oom = 0; }

static int b_grow(buf_t *b, Py_ssize_t extra, char *stack) {
    Py_ssize_t want = b->n + extra;
    if (want <= b->cap) return 0;
    Py_ssize_t cap = b->cap * 2;
    if (cap < want) cap = want;
    char *q;
    if (b->p == stack) {
        q = PyMem_Malloc(cap);
        if (q) memcpy(q, b->p, b->n);
    } else {
        q = PyMem_Realloc(b->p, cap);
    }
    if (!q) { b->oom = 1; return -1; }
    b->p = q; b->cap = cap;
    return 0;
}

#define STACK_CAP 4096
#define PUT(b, s, len) do { if (b_grow((b), (len), stack) == 0) { memcpy((b)->p + (b)->n, (s), (len)); (b)->n += (len); } } while (0)
#define PUTS(b, lit) PUT(b, lit, (Py_ssize_t)(sizeof(lit) - 1))

static void put_i64(buf_t *b, char *stack, long long v) {
    char tmp[24];
    int len = snprintf(tmp, sizeof tmp, "%lld", v);
    PUT(b, tmp, len);
}

/* JSON string as orjson / RFC 8785 write it: UTF-8 as is; '"' and '\' escaped; \b \t \n \f \r;
 * other controls below 0x20 as \u00xx (lowercase hex). */
static void put_json_str(buf_t *b, char *stack, const char *s, Py_ssize_t len) {
    static const char hex[] = "0123456789abcdef";
    if (b_grow(b, len + 2, stack)) return;
    b->p[b->n++] = '"';
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        PUT(b, s + start, i - start);
        char e[6];
        int el = 2;
        e[0] = '\\';
        switch (c) {
            case '"': e[1] = '"'; break;
            case '\\': e[1] = '\\'; break;
            case '\b': e[1] = 'b'; break;
            case '\t': e[1] = 't'; break;
            case '\n': e[1] = 'n'; break;
            case '\f': e[1] = 'f'; break;
            case '\r': e[1] = 'r'; break;
            default:
                e[1] = 'u'; e[2] = '0'; e[3] = '0'; e[4] = hex[c >> 4]; e[5] = hex[c & 15]; el = 6;
        }
        PUT(b, e, el);
        start = i + 1;
    }
    PUT(b, s + start, len - start);
    PUTS(b, "\"");
}

/* str -> its UTF-8 (borrowed from the str); NULL with no exception set when not a str or not
 * encodable (lone surrogates: the Python path raises for those, as orjson does). */
static const char *utf8_of(PyObject *o, Py_ssize_t *len) {
    if (!PyUnicode_Check(o)) return NULL;
    const char *s = PyUnicode_AsUTF8AndSize(o, len);
    if (!s) PyErr_Clear();
    return s;
}

/* a str field or None; returns 0 on success, -1 to fall back */
static int put_str_or_null(buf_t *b, char *stack, PyObject *o) {
    if (o == Py_None) { PUTS(b, "null"); return 0; }
    Py_ssize_t len;
    const char *s = utf8_of(o, &len);
    if (!s) return -1;
    put_json_str(b, stack, s, len);
    return 0;
}

/* exact int within 64 bits */
static int i64_of(PyObject *o, long long *out) {
    if (!PyLong_CheckExact(o)) return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) { PyErr_Clear(); return -1; }
    *out = v;
    return 0;
}

/* record._us: milliseconds (float or exact int) -> integer microseconds, rounded half away from 0 */
static int us_of_ms(PyObject *o, long long *out) {
    double ms;
    if (PyFloat_CheckExact(o)) ms = PyFloat_AS_DOUBLE(o);
    else if (PyLong_CheckExact(o)) {
        ms = PyLong_AsDouble(o);
        if (ms == -1.0 && PyErr_Occurred()) { PyErr_Clear(); return -1; }
    } else return -1;
    double x = ms >= 0 ? ms * 1000.0 + 0.5 : -ms * 1000.0 + 0.5;
    if (!isfinite(x) || x >= 9.2e18) return -1;
    long long v = (long long)x; /* truncation, as Python's int() of a float */
    *out = ms >= 0 ? v : -v;
    return 0;
}

/* ---- digests (digest.py) -------------------------------------------------------------------- */

typedef struct { const char *n; Py_ssize_t nl; const char *v; Py_ssize_t vl; char lname[20]; } hdr_t;

static const char *SIGNED[] = {"content-type", "content-encoding", "idempotency-key", "x-request-id"};

static int is_ascii_ws(unsigned char c) { return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f); }

static int hdr_cmp(const hdr_t *a, const hdr_t *b) {
    Py_ssize_t m = a->nl < b->nl ? a->nl : b->nl;
    int c = memcmp(a->lname, b->lname, m);
    if (c) return c;
    if (a->nl != b->nl) return a->nl < b->nl ? -1 : 1;
    m = a->vl < b->vl ? a->vl : b->vl;
    c = memcmp(a->v, b->v, m);
    if (c) return c;
    return a->vl < b->vl ? -1 : a->vl > b->vl;
}

#define MAX_PICKED 32

/* header-lines of digest.py appended to b; -1 to fall back */
static int put_header_lines(buf_t *b, char *stack, PyObject *headers) {
    if (!PyList_CheckExact(headers) && !PyTuple_CheckExact(headers)) return -1;
    PyObject *seq = headers; /* list or tuple: PySequence_Fast_* apply */
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    hdr_t picked[MAX_PICKED];
    int np = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) return -1;
        PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        if (!PyBytes_CheckExact(name)) return -1;
        Py_ssize_t nl = PyBytes_GET_SIZE(name);
        if (nl != 12 && nl != 15 && nl != 16) continue;
        const char *ns = PyBytes_AS_STRING(name);
        char low[20];
        for (Py_ssize_t k = 0; k < nl; k++) {
            char c = ns[k];
            low[k] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        int hit = 0;
        for (int s = 0; s < 4; s++)
            if ((Py_ssize_t)strlen(SIGNED[s]) == nl && memcmp(SIGNED[s], low, nl) == 0) { hit = 1; break; }
        if (!hit) continue;
        if (!PyBytes_CheckExact(value) || np == MAX_PICKED) return -1;
        const char *v = PyBytes_AS_STRING(value);
        Py_ssize_t vl = PyBytes_GET_SIZE(value);
        for (Py_ssize_t k = 0; k < vl; k++)
            if ((unsigned char)v[k] >= 0x80) return -1;
        while (vl && is_ascii_ws((unsigned char)v[0])) { v++; vl--; }
        while (vl && is_ascii_ws((unsigned char)v[vl - 1])) vl--;
        hdr_t *h = &picked[np++];
        memcpy(h->lname, low, nl);
        h->n = h->lname; h->nl = nl; h->v = v; h->vl = vl;
    }
    for (int i = 1; i < np; i++) { /* insertion sort: a handful of headers */
        hdr_t x = picked[i];
        int j = i - 1;
        while (j >= 0 && hdr_cmp(&picked[j], &x) > 0) { picked[j + 1] = picked[j]; j--; }
        picked[j + 1] = x;
    }
    for (int i = 0; i < np; i++) {
        PUT(b, picked[i].lname, picked[i].nl);
        PUTS(b, ":");
        PUT(b, picked[i].v, picked[i].vl);
        PUTS(b, "\n");
    }
    return 0;
}

static int sha256(const char *p, Py_ssize_t n, unsigned char out[32]) {
    unsigned int len = 0;
    if (!EVP_DigestInit_ex(md_ctx, EVP_sha256(), NULL) || !EVP_DigestUpdate(md_ctx, p, (size_t)n)
        || !EVP_DigestFinal_ex(md_ctx, out, &len) || len != 32)
        return -1;
    return 0;
}

static void to_hex(const unsigned char *d, char *out) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) { out[2 * i] = hex[d[i] >> 4]; out[2 * i + 1] = hex[d[i] & 15]; }
}

/* digests_of(digest_input) into two 64-char hex strings; -1 to fall back */
static int digests(PyObject *din, char req_hex[64], char resp_hex[64]) {
    if (!PyTuple_CheckExact(din) || PyTuple_GET_SIZE(din) != 7) return -1;
    PyObject *method = PyTuple_GET_ITEM(din, 0), *path = PyTuple_GET_ITEM(din, 1),
             *req_h = PyTuple_GET_ITEM(din, 2), *req_body = PyTuple_GET_ITEM(din, 3),
             *status = PyTuple_GET_ITEM(din, 4), *resp_h = PyTuple_GET_ITEM(din, 5),
             *resp_body = PyTuple_GET_ITEM(din, 6);
    if (!PyBytes_CheckExact(req_body) || !PyBytes_CheckExact(resp_body)) return -1;
    Py_ssize_t ml, pl;
    const char *m = utf8_of(method, &ml), *p = utf8_of(path, &pl);
    if (!m || !p) return -1;
    long long st;
    if (i64_of(status, &st)) return -1;
    char stack[STACK_CAP];
    buf_t b;
    unsigned char d[32];
    int rc = -1;
    b_init(&b, stack, STACK_CAP);
    PUTS(&b, "REQ\n");
    if (b_grow(&b, ml, stack) == 0) {
        for (Py_ssize_t i = 0; i < ml; i++) {
            char c = m[i];
            if ((unsigned char)c >= 0x80) goto done; /* str.upper() of non-ASCII, then .encode("ascii"): Python's job */
            b.p[b.n++] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
        }
    }
    PUTS(&b, "\n");
    PUT(&b, p, pl);
    PUTS(&b, "\n");
    if (put_header_lines(&b, stack, req_h)) goto done;
    PUTS(&b, "\n");
    PUT(&b, PyBytes_AS_STRING(req_body), PyBytes_GET_SIZE(req_body));
    if (b.oom || sha256(b.p, b.n, d)) goto done;
    to_hex(d, req_hex);
    b.n = 0;
    PUTS(&b, "RES\n");
    put_i64(&b, stack, st);
    PUTS(&b, "\n");
    if (put_header_lines(&b, stack, resp_h)) goto done;
    PUTS(&b, "\n");
    PUT(&b, PyBytes_AS_STRING(resp_body), PyBytes_GET_SIZE(resp_body));
    if (b.oom || sha256(b.p, b.n, d)) goto done;
    to_hex(d, resp_hex);
    rc = 0;
done:
    if (b.p != stack) PyMem_Free(b.p);
    return rc;
}

/* ---- time ----------------------------------------------------------------------------------- */

/* civil_from_days: H. Hinnant, "chrono-Compatible Low-Level Date Algorithms" (public domain) */
static void civil_from_days(long long z, long long *y, unsigned *m, unsigned *d) {
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long yy = (long long)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static long long floor_div(long long a, long long b) { long long q = a / b; return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q; }

/* record.iso_from_us: "YYYY-MM-DDTHH:MM:SS.ffffffZ"; -1 outside datetime's years 1..9999 */
static int iso_of(long long us, char out[27]) {
    long long sec = floor_div(us, 1000000), frac = us - sec * 1000000;
    long long days = floor_div(sec, 86400), sod = sec - days * 86400;
    long long y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    if (y < 1 || y > 9999) return -1;
    char tmp[80];
    snprintf(tmp, sizeof tmp, "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%06lldZ", y, mo, d, sod / 3600, sod / 60 % 60,
             sod % 60, frac);
    memcpy(out, tmp, 27);
    return 0;
}

/* ---- the record ----------------------------------------------------------------------------- */

#define FIELD(b, lit) PUTS(b, lit)

static PyObject *encode_packed(PyObject *self, PyObject *t) {
    (void)self;
    if (encoded_type == NULL || !PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 18) Py_RETURN_NONE;
    PyObject *request_id = PyTuple_GET_ITEM(t, 0), *us_o = PyTuple_GET_ITEM(t, 1),
             *client_id = PyTuple_GET_ITEM(t, 2), *service_id = PyTuple_GET_ITEM(t, 3),
             *operation = PyTuple_GET_ITEM(t, 4), *operator_id = PyTuple_GET_ITEM(t, 5),
             *province = PyTuple_GET_ITEM(t, 6), *method = PyTuple_GET_ITEM(t, 7), *path = PyTuple_GET_ITEM(t, 8),
             *status = PyTuple_GET_ITEM(t, 9), *latency = PyTuple_GET_ITEM(t, 10), *attempts = PyTuple_GET_ITEM(t, 11),
             *gateway_error = PyTuple_GET_ITEM(t, 12), *req_d = PyTuple_GET_ITEM(t, 13),
             *resp_d = PyTuple_GET_ITEM(t, 14), *din = PyTuple_GET_ITEM(t, 17);
    if (PyTuple_GET_ITEM(t, 15) != Py_None || PyTuple_GET_ITEM(t, 16) != Py_None) Py_RETURN_NONE; /* kept bodies */
    if (!PyUnicode_Check(request_id) || !(client_id == Py_None || PyUnicode_Check(client_id))) Py_RETURN_NONE;
    long long us, st, lat;
    char iso[27];
    if (i64_of(us_o, &us) || iso_of(us, iso) || i64_of(status, &st) || us_of_ms(latency, &lat)) Py_RETURN_NONE;
    char req_hex[64], resp_hex[64];
    const char *rq = NULL, *rs = NULL;
    Py_ssize_t rql = 64, rsl = 64;
    if (req_d == Py_None) {
        if (digests(din, req_hex, resp_hex)) Py_RETURN_NONE;
        rq = req_hex; rs = resp_hex;
    } else {
        rq = utf8_of(req_d, &rql);
        rs = utf8_of(resp_d, &rsl);
        if (!rq || !rs) Py_RETURN_NONE;
    }
    if (!PyList_CheckExact(attempts) && !PyTuple_CheckExact(attempts)) Py_RETURN_NONE;
    Py_ssize_t n_att = PySequence_Fast_GET_SIZE(attempts);

    char stack[STACK_CAP];
    buf_t b;
    b_init(&b, stack, STACK_CAP);
    PyObject *result = NULL;
    Py_ssize_t pl;
    const char *ps;

    FIELD(&b, "{\"attempts\":[");
    Py_ssize_t distinct = 0;
    for (Py_ssize_t i = 0; i < n_att; i++) {
        PyObject *a = PySequence_Fast_GET_ITEM(attempts, i);
        if (!PyTuple_CheckExact(a) || PyTuple_GET_SIZE(a) != 4) goto fallback;
        PyObject *op = PyTuple_GET_ITEM(a, 0), *outcome = PyTuple_GET_ITEM(a, 1), *ast = PyTuple_GET_ITEM(a, 2);
        long long alat;
        if (!PyUnicode_Check(op) || !PyUnicode_Check(outcome) || us_of_ms(PyTuple_GET_ITEM(a, 3), &alat)) goto fallback;
        /* failovers: distinct operator ids among the attempts (str equality) */
        int seen = 0;
        for (Py_ssize_t j = 0; j < i && !seen; j++) {
            PyObject *prev = PyTuple_GET_ITEM(PySequence_Fast_GET_ITEM(attempts, j), 0);
            int eq = PyUnicode_Compare(prev, op);
            if (eq == -1 && PyErr_Occurred()) { PyErr_Clear(); goto fallback; }
            seen = eq == 0;
        }
        distinct += !seen;
        if (i) FIELD(&b, ",");
        FIELD(&b, "{\"latency_us\":");
        put_i64(&b, stack, alat);
        FIELD(&b, ",\"operator_id\":");
        if (put_str_or_null(&b, stack, op)) goto fallback;
        FIELD(&b, ",\"outcome\":");
        if (put_str_or_null(&b, stack, outcome)) goto fallback;
        FIELD(&b, ",\"status\":");
        if (ast == Py_None) FIELD(&b, "null");
        else {
            long long s;
            if (i64_of(ast, &s)) goto fallback;
            put_i64(&b, stack, s);
        }
        FIELD(&b, "}");
    }
    FIELD(&b, "],\"caller_province\":");
    if (put_str_or_null(&b, stack, province)) goto fallback;
    FIELD(&b, ",\"client_id\":");
    if (put_str_or_null(&b, stack, client_id)) goto fallback;
    FIELD(&b, ",\"failovers\":");
    put_i64(&b, stack, n_att > 1 ? distinct - 1 : 0);
    FIELD(&b, ",\"gateway_error\":");
    if (put_str_or_null(&b, stack, gateway_error)) goto fallback;
    FIELD(&b, ",\"kind\":\"exchange\",\"latency_us\":");
    put_i64(&b, stack, lat);
    FIELD(&b, ",\"method\":");
    if (method == Py_None || put_str_or_null(&b, stack, method)) goto fallback;
    FIELD(&b, ",\"operation\":");
    if (put_str_or_null(&b, stack, operation)) goto fallback;
    FIELD(&b, ",\"operator_id\":");
    if (put_str_or_null(&b, stack, operator_id)) goto fallback;
    FIELD(&b, ",\"path\":");
    ps = utf8_of(path, &pl);
    if (!ps) goto fallback;
    {
        const char *q = memchr(ps, '?', (size_t)pl); /* the log never keeps query values */
        put_json_str(&b, stack, ps, q ? q - ps : pl);
    }
    FIELD(&b, ",\"request_digest\":");
    put_json_str(&b, stack, rq, rql);
    FIELD(&b, ",\"request_id\":");
    if (put_str_or_null(&b, stack, request_id)) goto fallback;
    FIELD(&b, ",\"response_digest\":");
    put_json_str(&b, stack, rs, rsl);
    FIELD(&b, ",\"retries\":");
    put_i64(&b, stack, n_att > 1 ? n_att - 1 : 0);
    FIELD(&b, ",\"service_id\":");
    if (put_str_or_null(&b, stack, service_id)) goto fallback;
    FIELD(&b, ",\"status\":");
    put_i64(&b, stack, st);
    FIELD(&b, ",\"time\":\"");
    PUT(&b, iso, 27);
    FIELD(&b, "\",\"v\":1}");
    if (b.oom) { PyErr_NoMemory(); goto out; }
    {
        unsigned char leaf[32];
        /* leaf hash SHA-256(0x00 || record): the record is written after a 0x00 byte in place */
        PyObject *data = PyBytes_FromStringAndSize(b.p, b.n);
        if (!data) goto out;
        char *tmp = PyMem_Malloc(b.n + 1);
        if (!tmp) { Py_DECREF(data); PyErr_NoMemory(); goto out; }
        tmp[0] = 0;
        memcpy(tmp + 1, b.p, b.n);
        int bad = sha256(tmp, b.n + 1, leaf);
        PyMem_Free(tmp);
        if (bad) { Py_DECREF(data); goto fallback; }
        PyObject *leaf_o = PyBytes_FromStringAndSize((const char *)leaf, 32);
        if (!leaf_o) { Py_DECREF(data); goto out; }
        result = encoded_type->tp_alloc(encoded_type, 8);
        if (!result) { Py_DECREF(data); Py_DECREF(leaf_o); goto out; }
        Py_INCREF(request_id); Py_INCREF(client_id); Py_INCREF(us_o); Py_INCREF(str_exchange);
        Py_INCREF(Py_None); Py_INCREF(Py_None);
        PyTuple_SET_ITEM(result, 0, data);
        PyTuple_SET_ITEM(result, 1, leaf_o);
        PyTuple_SET_ITEM(result, 2, request_id);
        PyTuple_SET_ITEM(result, 3, client_id);
        PyTuple_SET_ITEM(result, 4, us_o);
        PyTuple_SET_ITEM(result, 5, str_exchange);
        PyTuple_SET_ITEM(result, 6, Py_None);
        PyTuple_SET_ITEM(result, 7, Py_None);
    }
    goto out;
fallback:
    result = Py_None;
    Py_INCREF(result);
out:
    if (b.p != stack) PyMem_Free(b.p);
    return result;
}

static PyObject *set_encoded_type(PyObject *self, PyObject *typ) {
    (void)self;
    if (!PyType_Check(typ) || !PyType_IsSubtype((PyTypeObject *)typ, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Encoded must be a tuple subclass");
        return NULL;
    }
    Py_INCREF(typ);
    Py_XSETREF(encoded_type, (PyTypeObject *)typ);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"encode_packed", encode_packed, METH_O,
     "encode_packed(t) -> Encoded | None: record.encode_packed(t) in C, or None outside the fast path."},
    {"set_encoded_type", set_encoded_type, METH_O, "Register record.Encoded (called once by record.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastrecord", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__fastrecord(void) {
    md_ctx = EVP_MD_CTX_new();
    str_exchange = PyUnicode_InternFromString("exchange");
    if (!md_ctx || !str_exchange) return PyErr_NoMemory();
    return PyModule_Create(&module);
}
