/* Native fast path of the exchange log's record encoding (zistboom.exchange_log.record).
 *
 * Why C: per record, the gateway spent ~3.6 us packing an exchange for the writer process and the
 * writer ~3.8 us unmarshalling it plus ~15 us encoding it in Python (record dict, header
 * canonicalisation, three SHA-256, canonical JSON). Here the gateway writes a compact native form
 * (pack_native) and the writer turns it straight into the record (encode_native). The record
 * format is the project's core, so it is written here rather than taken from a library.
 *
 * Contract (tests/exchange_log/test_fastrecord.py checks it on generated exchanges):
 *  - encode_packed(t) takes a record.pack_exchange() tuple and returns exactly the Encoded that
 *    record.encode_packed_py(t) returns, or None when t is outside the common case handled here
 *    (kept bodies, non-ASCII method or signed header values, non-bytes header names, ints beyond
 *    64 bits, non-finite latencies, years outside 1..9999, unexpected types...). The caller then
 *    uses the Python encoder, which is the definition.
 *  - pack_native(exchange) returns the native form (bytes starting with NATIVE_MAGIC) only for exchanges
 *    whose record encode_native can produce exactly (same checks), else None; the caller then
 *    uses pack_exchange + marshal. It never raises.
 *  - encode_native(data) returns the Encoded of the exchange it was made from (equal to
 *    encode_packed_py(pack_exchange(exchange))). Damaged data (it never leaves one installation's
 *    two processes) raises ValueError when its structure is broken; changed string bytes may give
 *    some other record instead, as any other corruption of a record before it is hashed would.
 *
 * Native form layout (the machine's byte order; s = u32 length + UTF-8 / raw bytes, length 0xFFFFFFFF = None):
 *   u8 0x01 | u8 flags | i64 time_us | i64 status | i64 latency_us
 *   | s request_id, client_id, service_id, operation, operator_id, caller_province, method, path,
 *     gateway_error | u32 n_attempts, each: s operator_id, s outcome, u8 has_status, i64 status,
 *     i64 latency_us | s A | s B
 * flags bit 0 clear: A and B are the canonical request and response messages of digest.py (what
 * the digests hash); set: A and B are the hex digests themselves.
 * The native form exists only between the two processes of one installation (same build), never on
 * disk: the spill file and the database hold canonical records.
 *
 * SHA-256 is OpenSSL's (libcrypto, which Python's hashlib uses); nothing cryptographic is
 * implemented here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <string.h>
#include <openssl/evp.h>

#define NATIVE_MAGIC 0x01

static PyTypeObject *encoded_type = NULL; /* record.Encoded (a NamedTuple: tuple layout) */
static PyObject *str_exchange = NULL;     /* "exchange" */
static EVP_MD_CTX *md_ctx = NULL;          /* used only while holding the GIL */
static PyObject *A_request_id, *A_time, *A_client_id, *A_service_id, *A_operation, *A_operator_id,
    *A_caller_province, *A_method, *A_path, *A_status, *A_latency_ms, *A_attempts, *A_gateway_error,
    *A_request_digest, *A_response_digest, *A_request_body, *A_response_body, *A_digest_input, *A_outcome;

/* ---- growable buffer (starts on the caller's stack) ----------------------------------------- */

typedef struct {
    char *p;
    Py_ssize_t n, cap;
    int oom;
    char *stack;
} buf_t;

#define STACK_CAP 4096
static void b_init(buf_t *b, char *stack) { b->p = stack; b->n = 0; b->cap = STACK_CAP; b->oom = 0; b->stack = stack; }
static void b_free(buf_t *b) { if (b->p != b->stack) PyMem_Free(b->p); }

static int b_grow(buf_t *b, Py_ssize_t extra) {
    Py_ssize_t want = b->n + extra;
    if (want <= b->cap) return 0;
    if (b->oom) return -1;
    Py_ssize_t cap = b->cap * 2;
    if (cap < want) cap = want;
    char *q;
    if (b->p == b->stack) {
        q = PyMem_Malloc(cap);
        if (q) memcpy(q, b->p, b->n);
    } else {
        q = PyMem_Realloc(b->p, cap);
    }
    if (!q) { b->oom = 1; return -1; }
    b->p = q; b->cap = cap;
    return 0;
}

static void put(buf_t *b, const void *s, Py_ssize_t len) {
    if (b_grow(b, len) == 0) { memcpy(b->p + b->n, s, len); b->n += len; }
}
#define PUTS(b, lit) put(b, lit, (Py_ssize_t)(sizeof(lit) - 1))

static void put_i64(buf_t *b, long long v) {
    char tmp[24];
    int len = snprintf(tmp, sizeof tmp, "%lld", v);
    put(b, tmp, len);
}

/* ---- values --------------------------------------------------------------------------------- */

typedef struct { const char *p; Py_ssize_t n; } sv_t; /* p == NULL: None */

/* str -> its UTF-8 (kept by the str); 0 on success; -1 (no exception set) when not a str or not
 * encodable (lone surrogates: the Python path raises for those, as orjson does). */
static int sv_of_str(PyObject *o, sv_t *out) {
    if (!PyUnicode_Check(o)) return -1;
    out->p = PyUnicode_AsUTF8AndSize(o, &out->n);
    if (!out->p) { PyErr_Clear(); return -1; }
    return 0;
}

static int sv_of_str_or_none(PyObject *o, sv_t *out) {
    if (o == Py_None) { out->p = NULL; out->n = 0; return 0; }
    return sv_of_str(o, out);
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

/* milliseconds (float or exact int) as a double, as Python's `ms * 1000.0` sees it */
static int ms_of(PyObject *o, double *out) {
    if (PyFloat_CheckExact(o)) { *out = PyFloat_AS_DOUBLE(o); return 0; }
    if (PyLong_CheckExact(o)) {
        *out = PyLong_AsDouble(o);
        if (*out == -1.0 && PyErr_Occurred()) { PyErr_Clear(); return -1; }
        return 0;
    }
    return -1;
}

/* record._us: milliseconds -> integer microseconds, rounded half away from zero; -1 when Python
 * would raise (not finite) or the result leaves 64 bits */
static int us_of_ms(double ms, long long *out) {
    double x = ms >= 0 ? ms * 1000.0 + 0.5 : -ms * 1000.0 + 0.5;
    if (!isfinite(x) || x >= 9.2e18) return -1;
    long long v = (long long)x; /* truncation, as Python's int() of a float */
    *out = ms >= 0 ? v : -v;
    return 0;
}

/* ---- JSON ----------------------------------------------------------------------------------- */

/* JSON string as orjson / RFC 8785 write it: UTF-8 as is; '"' and '\' escaped; \b \t \n \f \r;
 * other controls below 0x20 as \u00xx (lowercase hex). */
static void put_json_str(buf_t *b, sv_t s) {
    static const char hex[] = "0123456789abcdef";
    if (!s.p) { PUTS(b, "null"); return; }
    if (b_grow(b, s.n + 2)) return;
    b->p[b->n++] = '"';
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        put(b, s.p + start, i - start);
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
        put(b, e, el);
        start = i + 1;
    }
    put(b, s.p + start, s.n - start);
    PUTS(b, "\"");
}

/* ---- canonical messages (digest.py) --------------------------------------------------------- */

typedef struct { const char *v; Py_ssize_t nl, vl; char lname[16]; } hdr_t;

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

/* digest.py's header-lines of a list/tuple of (bytes, bytes), appended to b; -1 to fall back */
static int put_header_lines(buf_t *b, PyObject *headers) {
    if (!PyList_CheckExact(headers) && !PyTuple_CheckExact(headers)) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(headers);
    hdr_t picked[MAX_PICKED];
    int np = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) return -1;
        PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        if (!PyBytes_CheckExact(name)) return -1;
        Py_ssize_t nl = PyBytes_GET_SIZE(name);
        if (nl != 12 && nl != 15 && nl != 16) continue;
        const char *ns = PyBytes_AS_STRING(name);
        char low[16];
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
        h->nl = nl; h->v = v; h->vl = vl;
    }
    for (int i = 1; i < np; i++) { /* insertion sort: a handful of headers */
        hdr_t x = picked[i];
        int j = i - 1;
        while (j >= 0 && hdr_cmp(&picked[j], &x) > 0) { picked[j + 1] = picked[j]; j--; }
        picked[j + 1] = x;
    }
    for (int i = 0; i < np; i++) {
        put(b, picked[i].lname, picked[i].nl);
        PUTS(b, ":");
        put(b, picked[i].v, picked[i].vl);
        PUTS(b, "\n");
    }
    return 0;
}

/* The canonical request and response messages of a digest_input tuple (method, path,
 * request_headers, request_body, status, response_headers, response_body); -1 to fall back */
static int canonical_messages(PyObject *din, buf_t *req, buf_t *resp) {
    if (!PyTuple_CheckExact(din) || PyTuple_GET_SIZE(din) != 7) return -1;
    PyObject *req_body = PyTuple_GET_ITEM(din, 3), *resp_body = PyTuple_GET_ITEM(din, 6);
    if (!PyBytes_CheckExact(req_body) || !PyBytes_CheckExact(resp_body)) return -1;
    sv_t m, p;
    long long st;
    if (sv_of_str(PyTuple_GET_ITEM(din, 0), &m) || sv_of_str(PyTuple_GET_ITEM(din, 1), &p)
        || i64_of(PyTuple_GET_ITEM(din, 4), &st))
        return -1;
    PUTS(req, "REQ\n");
    if (b_grow(req, m.n)) return -1;
    for (Py_ssize_t i = 0; i < m.n; i++) {
        char c = m.p[i];
        if ((unsigned char)c >= 0x80) return -1; /* str.upper() of non-ASCII, then .encode("ascii"): Python's job */
        req->p[req->n++] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
    }
    PUTS(req, "\n");
    put(req, p.p, p.n);
    PUTS(req, "\n");
    if (put_header_lines(req, PyTuple_GET_ITEM(din, 2))) return -1;
    PUTS(req, "\n");
    put(req, PyBytes_AS_STRING(req_body), PyBytes_GET_SIZE(req_body));
    PUTS(resp, "RES\n");
    put_i64(resp, st);
    PUTS(resp, "\n");
    if (put_header_lines(resp, PyTuple_GET_ITEM(din, 5))) return -1;
    PUTS(resp, "\n");
    put(resp, PyBytes_AS_STRING(resp_body), PyBytes_GET_SIZE(resp_body));
    return req->oom || resp->oom ? -1 : 0;
}

static int sha256_hex(const char *p, Py_ssize_t n, const char *prefix, int prefix_len, unsigned char raw[32],
                      char *hex_out) {
    static const char hex[] = "0123456789abcdef";
    unsigned int len = 0;
    if (!EVP_DigestInit_ex(md_ctx, EVP_sha256(), NULL) || (prefix_len && !EVP_DigestUpdate(md_ctx, prefix, prefix_len))
        || !EVP_DigestUpdate(md_ctx, p, (size_t)n) || !EVP_DigestFinal_ex(md_ctx, raw, &len) || len != 32)
        return -1;
    if (hex_out)
        for (int i = 0; i < 32; i++) { hex_out[2 * i] = hex[raw[i] >> 4]; hex_out[2 * i + 1] = hex[raw[i] & 15]; }
    return 0;
}

/* ---- time ----------------------------------------------------------------------------------- */

/* days_from_civil / civil_from_days: H. Hinnant, "chrono-Compatible Low-Level Date Algorithms" */
static long long days_from_civil(long long y, unsigned m, unsigned d) {
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

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
    /* datetime's range, 0001-01-01T00:00:00 to 9999-12-31T23:59:59.999999 (also keeps the
     * arithmetic below far from 64-bit overflow) */
    if (us < -62135596800000000LL || us > 253402300799999999LL) return -1;
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

#define MAX_ATT 64

typedef struct { sv_t op, outcome; int has_status; long long status; long long lat_us; } att_t;

typedef struct {
    sv_t request_id, client_id, service_id, operation, operator_id, province, method, path, gateway_error;
    long long us, status, lat_us;
    int n_att;
    att_t att[MAX_ATT];
    sv_t req_d, resp_d; /* hex digests */
    char req_hex[64], resp_hex[64];
} rec_t;

/* The canonical record bytes of r and their leaf hash, as an Encoded; NULL with an exception on
 * memory exhaustion only. rid/cid/us_o are the objects for the Encoded's columns. */
static PyObject *encoded_of(const rec_t *r, PyObject *rid, PyObject *cid, PyObject *us_o) {
    char stack[STACK_CAP];
    buf_t b;
    char iso[27];
    b_init(&b, stack);
    iso_of(r->us, iso); /* checked by the callers */
    PUTS(&b, "{\"attempts\":[");
    Py_ssize_t distinct = 0;
    for (int i = 0; i < r->n_att; i++) {
        const att_t *a = &r->att[i];
        int seen = 0; /* failovers: distinct operator ids among the attempts */
        for (int j = 0; j < i && !seen; j++)
            seen = r->att[j].op.n == a->op.n && memcmp(r->att[j].op.p, a->op.p, a->op.n) == 0;
        distinct += !seen;
        if (i) PUTS(&b, ",");
        PUTS(&b, "{\"latency_us\":");
        put_i64(&b, a->lat_us);
        PUTS(&b, ",\"operator_id\":");
        put_json_str(&b, a->op);
        PUTS(&b, ",\"outcome\":");
        put_json_str(&b, a->outcome);
        PUTS(&b, ",\"status\":");
        if (a->has_status) put_i64(&b, a->status);
        else PUTS(&b, "null");
        PUTS(&b, "}");
    }
    PUTS(&b, "],\"caller_province\":");
    put_json_str(&b, r->province);
    PUTS(&b, ",\"client_id\":");
    put_json_str(&b, r->client_id);
    PUTS(&b, ",\"failovers\":");
    put_i64(&b, r->n_att > 1 ? distinct - 1 : 0);
    PUTS(&b, ",\"gateway_error\":");
    put_json_str(&b, r->gateway_error);
    PUTS(&b, ",\"kind\":\"exchange\",\"latency_us\":");
    put_i64(&b, r->lat_us);
    PUTS(&b, ",\"method\":");
    put_json_str(&b, r->method);
    PUTS(&b, ",\"operation\":");
    put_json_str(&b, r->operation);
    PUTS(&b, ",\"operator_id\":");
    put_json_str(&b, r->operator_id);
    PUTS(&b, ",\"path\":");
    {
        sv_t p = r->path;
        const char *q = memchr(p.p, '?', (size_t)p.n); /* the log never keeps query values */
        if (q) p.n = q - p.p;
        put_json_str(&b, p);
    }
    PUTS(&b, ",\"request_digest\":");
    put_json_str(&b, r->req_d);
    PUTS(&b, ",\"request_id\":");
    put_json_str(&b, r->request_id);
    PUTS(&b, ",\"response_digest\":");
    put_json_str(&b, r->resp_d);
    PUTS(&b, ",\"retries\":");
    put_i64(&b, r->n_att > 1 ? r->n_att - 1 : 0);
    PUTS(&b, ",\"service_id\":");
    put_json_str(&b, r->service_id);
    PUTS(&b, ",\"status\":");
    put_i64(&b, r->status);
    PUTS(&b, ",\"time\":\"");
    put(&b, iso, 27);
    PUTS(&b, "\",\"v\":1}");
    PyObject *result = NULL, *data = NULL, *leaf_o = NULL;
    unsigned char leaf[32];
    if (b.oom) { PyErr_NoMemory(); goto out; }
    if (sha256_hex(b.p, b.n, "\x00", 1, leaf, NULL)) { PyErr_SetString(PyExc_RuntimeError, "SHA-256 failed"); goto out; }
    data = PyBytes_FromStringAndSize(b.p, b.n);
    leaf_o = PyBytes_FromStringAndSize((const char *)leaf, 32);
    if (!data || !leaf_o) goto out;
    result = encoded_type->tp_alloc(encoded_type, 8);
    if (!result) goto out;
    Py_INCREF(rid); Py_INCREF(cid); Py_INCREF(us_o); Py_INCREF(str_exchange); Py_INCREF(Py_None); Py_INCREF(Py_None);
    PyTuple_SET_ITEM(result, 0, data);
    PyTuple_SET_ITEM(result, 1, leaf_o);
    PyTuple_SET_ITEM(result, 2, rid);
    PyTuple_SET_ITEM(result, 3, cid);
    PyTuple_SET_ITEM(result, 4, us_o);
    PyTuple_SET_ITEM(result, 5, str_exchange);
    PyTuple_SET_ITEM(result, 6, Py_None);
    PyTuple_SET_ITEM(result, 7, Py_None);
    data = leaf_o = NULL;
out:
    Py_XDECREF(data);
    Py_XDECREF(leaf_o);
    b_free(&b);
    return result;
}

/* An attempt: a (operator_id, outcome, status, latency_ms) tuple or an events.Attempt; -1 to fall
 * back. out->op / out->outcome point into str objects that must outlive their use: a tuple's own
 * items (is_tuple), else the two references handed to the caller in keep[] (attribute reads may
 * build new strings), which the caller drops after copying. */
static int att_of(PyObject *a, att_t *out, int is_tuple, PyObject **keep) {
    PyObject *op = NULL, *outcome = NULL, *st = NULL, *lat = NULL;
    if (is_tuple) {
        if (!PyTuple_CheckExact(a) || PyTuple_GET_SIZE(a) != 4) return -1;
        op = PyTuple_GET_ITEM(a, 0); outcome = PyTuple_GET_ITEM(a, 1);
        st = PyTuple_GET_ITEM(a, 2); lat = PyTuple_GET_ITEM(a, 3);
        Py_INCREF(op); Py_INCREF(outcome); Py_INCREF(st); Py_INCREF(lat);
    } else {
        if (!(op = PyObject_GetAttr(a, A_operator_id)) || !(outcome = PyObject_GetAttr(a, A_outcome))
            || !(st = PyObject_GetAttr(a, A_status)) || !(lat = PyObject_GetAttr(a, A_latency_ms))) {
            PyErr_Clear();
            Py_XDECREF(op); Py_XDECREF(outcome); Py_XDECREF(st); Py_XDECREF(lat);
            return -1;
        }
    }
    int rc = -1;
    double ms;
    if (sv_of_str(op, &out->op) || sv_of_str(outcome, &out->outcome) || ms_of(lat, &ms) || us_of_ms(ms, &out->lat_us))
        goto done;
    out->has_status = st != Py_None;
    if (out->has_status && i64_of(st, &out->status)) goto done;
    rc = 0;
    if (keep) { keep[0] = op; keep[1] = outcome; op = outcome = NULL; }
done:
    Py_XDECREF(op); Py_XDECREF(outcome); Py_XDECREF(st); Py_XDECREF(lat);
    return rc;
}

static PyObject *encode_packed(PyObject *self, PyObject *t) {
    (void)self;
    if (encoded_type == NULL || !PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 18) Py_RETURN_NONE;
    if (PyTuple_GET_ITEM(t, 15) != Py_None || PyTuple_GET_ITEM(t, 16) != Py_None) Py_RETURN_NONE; /* kept bodies */
    rec_t r;
    PyObject *us_o = PyTuple_GET_ITEM(t, 1), *req_d = PyTuple_GET_ITEM(t, 13), *attempts = PyTuple_GET_ITEM(t, 11);
    double ms;
    char iso[27];
    if (sv_of_str(PyTuple_GET_ITEM(t, 0), &r.request_id) || sv_of_str_or_none(PyTuple_GET_ITEM(t, 2), &r.client_id)
        || sv_of_str_or_none(PyTuple_GET_ITEM(t, 3), &r.service_id)
        || sv_of_str_or_none(PyTuple_GET_ITEM(t, 4), &r.operation)
        || sv_of_str_or_none(PyTuple_GET_ITEM(t, 5), &r.operator_id)
        || sv_of_str_or_none(PyTuple_GET_ITEM(t, 6), &r.province) || sv_of_str(PyTuple_GET_ITEM(t, 7), &r.method)
        || sv_of_str(PyTuple_GET_ITEM(t, 8), &r.path) || sv_of_str_or_none(PyTuple_GET_ITEM(t, 12), &r.gateway_error)
        || i64_of(us_o, &r.us) || iso_of(r.us, iso) || i64_of(PyTuple_GET_ITEM(t, 9), &r.status)
        || ms_of(PyTuple_GET_ITEM(t, 10), &ms) || us_of_ms(ms, &r.lat_us))
        Py_RETURN_NONE;
    if (!PyList_CheckExact(attempts) && !PyTuple_CheckExact(attempts)) Py_RETURN_NONE;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(attempts);
    if (n > MAX_ATT) Py_RETURN_NONE;
    r.n_att = (int)n;
    for (Py_ssize_t i = 0; i < n; i++)
        if (att_of(PySequence_Fast_GET_ITEM(attempts, i), &r.att[i], 1, NULL)) Py_RETURN_NONE;
    if (req_d == Py_None) {
        char s1[STACK_CAP], s2[STACK_CAP];
        buf_t req, resp;
        unsigned char raw[32];
        b_init(&req, s1);
        b_init(&resp, s2);
        int bad = canonical_messages(PyTuple_GET_ITEM(t, 17), &req, &resp)
                  || sha256_hex(req.p, req.n, NULL, 0, raw, r.req_hex) || sha256_hex(resp.p, resp.n, NULL, 0, raw, r.resp_hex);
        b_free(&req);
        b_free(&resp);
        if (bad) Py_RETURN_NONE;
        r.req_d.p = r.req_hex; r.req_d.n = 64;
        r.resp_d.p = r.resp_hex; r.resp_d.n = 64;
    } else if (sv_of_str(req_d, &r.req_d) || sv_of_str(PyTuple_GET_ITEM(t, 14), &r.resp_d)) {
        Py_RETURN_NONE;
    }
    return encoded_of(&r, PyTuple_GET_ITEM(t, 0), PyTuple_GET_ITEM(t, 2), us_o);
}

/* ---- native form --------------------------------------------------------------------------------- */

static void put_u32(buf_t *b, uint32_t v) { put(b, &v, 4); } /* native byte order: one machine only */
static void put_i64_raw(buf_t *b, long long v) { put(b, &v, 8); }
static void put_sv(buf_t *b, sv_t s) {
    if (!s.p) { put_u32(b, 0xFFFFFFFFu); return; }
    if (s.n >= 0xFFFFFFFF) { b->oom = 1; return; } /* beyond the u32 length: pack_native declines */
    put_u32(b, (uint32_t)s.n);
    put(b, s.p, s.n);
}

/* Largest request + response body (bytes) shipped in the native form: record.DEFER_BODY_MAX. */
static Py_ssize_t defer_body_max = 2048;

#define GET(obj, name, var) do { var = PyObject_GetAttr(obj, name); if (!var) goto fail; } while (0)

static PyObject *pack_native(PyObject *self, PyObject *ex) {
    (void)self;
    PyObject *o[9] = {NULL}; /* request_id client_id service_id operation operator_id caller_province method path
                                gateway_error: owned, so the UTF-8 in f[] stays valid */
    PyObject *din = NULL, *kb1 = NULL, *kb2 = NULL, *rd = NULL, *rsd = NULL;
    PyObject *result = NULL;
    char stack[STACK_CAP], s1[STACK_CAP], s2[STACK_CAP];
    buf_t b, req, resp;
    b_init(&b, stack);
    b_init(&req, s1);
    b_init(&resp, s2);
    PyObject *const names[9] = {A_request_id, A_client_id, A_service_id, A_operation, A_operator_id,
                                A_caller_province, A_method, A_path, A_gateway_error};
    PyObject *time_o = NULL, *status_o = NULL, *lat_o = NULL, *atts = NULL, *att_snap = NULL;
    sv_t f[9];
    for (int i = 0; i < 9; i++) {
        GET(ex, names[i], o[i]);
        if ((i == 0 || i == 6 || i == 7) ? sv_of_str(o[i], &f[i]) : sv_of_str_or_none(o[i], &f[i])) goto decline;
    }
    GET(ex, A_time, time_o);
    GET(ex, A_status, status_o);
    GET(ex, A_latency_ms, lat_o);
    GET(ex, A_attempts, atts);
    GET(ex, A_request_body, kb1);
    GET(ex, A_response_body, kb2);
    GET(ex, A_digest_input, din);
    if (kb1 != Py_None || kb2 != Py_None) goto decline; /* kept bodies: the Python path */
    if (!PyDateTime_Check(time_o) || ((PyDateTime_DateTime *)time_o)->hastzinfo == 0
        || ((PyDateTime_DateTime *)time_o)->tzinfo != PyDateTime_TimeZone_UTC)
        goto decline;
    long long us = (days_from_civil(PyDateTime_GET_YEAR(time_o), PyDateTime_GET_MONTH(time_o), PyDateTime_GET_DAY(time_o))
                    * 86400LL + PyDateTime_DATE_GET_HOUR(time_o) * 3600LL + PyDateTime_DATE_GET_MINUTE(time_o) * 60LL
                    + PyDateTime_DATE_GET_SECOND(time_o)) * 1000000LL + PyDateTime_DATE_GET_MICROSECOND(time_o);
    long long status, lat_us;
    double ms;
    if (i64_of(status_o, &status) || ms_of(lat_o, &ms) || us_of_ms(ms, &lat_us)) goto decline;
    if (!PyList_CheckExact(atts) && !PyTuple_CheckExact(atts)) goto decline;
    /* reading an attempt's fields may run Python code (properties) that changes the list */
    if (!(att_snap = PySequence_Tuple(atts))) goto fail;
    Py_ssize_t n_att = PyTuple_GET_SIZE(att_snap);
    if (n_att > MAX_ATT) goto decline;
    int flags = 0;
    if (din == Py_None) {
        flags = 1;
        GET(ex, A_request_digest, rd);
        GET(ex, A_response_digest, rsd);
    } else {
        if (!PyTuple_CheckExact(din) || PyTuple_GET_SIZE(din) != 7 || !PyBytes_CheckExact(PyTuple_GET_ITEM(din, 3))
            || !PyBytes_CheckExact(PyTuple_GET_ITEM(din, 6))
            || PyBytes_GET_SIZE(PyTuple_GET_ITEM(din, 3)) + PyBytes_GET_SIZE(PyTuple_GET_ITEM(din, 6)) > defer_body_max
            || canonical_messages(din, &req, &resp))
            goto decline;
    }
    put(&b, "\x01", 1);
    char fl = (char)flags;
    put(&b, &fl, 1);
    put_i64_raw(&b, us);
    put_i64_raw(&b, status);
    put_i64_raw(&b, lat_us);
    for (int i = 0; i < 9; i++) put_sv(&b, f[i]);
    put_u32(&b, (uint32_t)n_att);
    for (Py_ssize_t i = 0; i < n_att; i++) {
        /* keep[] owns the strings whose UTF-8 a.op / a.outcome point to until they are copied */
        att_t a;
        PyObject *keep[2];
        if (att_of(PyTuple_GET_ITEM(att_snap, i), &a, 0, keep)) goto decline;
        put_sv(&b, a.op);
        put_sv(&b, a.outcome);
        Py_DECREF(keep[0]);
        Py_DECREF(keep[1]);
        char hs = (char)a.has_status;
        put(&b, &hs, 1);
        put_i64_raw(&b, a.has_status ? a.status : 0);
        put_i64_raw(&b, a.lat_us);
    }
    if (flags & 1) {
        sv_t a, c;
        if (sv_of_str(rd, &a) || sv_of_str(rsd, &c)) goto decline;
        put_sv(&b, a);
        put_sv(&b, c);
    } else {
        sv_t a = {req.p, req.n}, c = {resp.p, resp.n};
        put_sv(&b, a);
        put_sv(&b, c);
    }
    if (b.oom) goto decline; /* (the time needs no check: a datetime is always within years 1..9999) */
    result = PyBytes_FromStringAndSize(b.p, b.n);
    if (!result) PyErr_Clear();
    goto done;
fail:
    PyErr_Clear();
decline:
    result = NULL;
done:
    for (int i = 0; i < 9; i++) Py_XDECREF(o[i]);
    Py_XDECREF(time_o); Py_XDECREF(status_o); Py_XDECREF(lat_o); Py_XDECREF(atts); Py_XDECREF(att_snap);
    Py_XDECREF(din); Py_XDECREF(kb1); Py_XDECREF(kb2); Py_XDECREF(rd); Py_XDECREF(rsd);
    b_free(&b);
    b_free(&req);
    b_free(&resp);
    if (result) return result;
    Py_RETURN_NONE;
}

typedef struct { const char *p, *end; } rd_t;

static int rd_take(rd_t *r, void *out, Py_ssize_t n) {
    if (r->end - r->p < n) return -1;
    memcpy(out, r->p, n);
    r->p += n;
    return 0;
}

static int rd_sv(rd_t *r, sv_t *s) {
    uint32_t n;
    if (rd_take(r, &n, 4)) return -1;
    if (n == 0xFFFFFFFFu) { s->p = NULL; s->n = 0; return 0; }
    if ((Py_ssize_t)(r->end - r->p) < (Py_ssize_t)n) return -1;
    s->p = r->p; s->n = n;
    r->p += n;
    return 0;
}

static PyObject *encode_native(PyObject *self, PyObject *data) {
    (void)self;
    if (encoded_type == NULL || !PyBytes_CheckExact(data)) {
        PyErr_SetString(PyExc_TypeError, "the native form is bytes (and record.py registers Encoded first)");
        return NULL;
    }
    rd_t rd = {PyBytes_AS_STRING(data), PyBytes_AS_STRING(data) + PyBytes_GET_SIZE(data)};
    rec_t r;
    unsigned char magic = 0, flags = 0;
    uint32_t n_att;
    char iso[27];
    if (rd_take(&rd, &magic, 1) || magic != NATIVE_MAGIC || rd_take(&rd, &flags, 1) || rd_take(&rd, &r.us, 8)
        || rd_take(&rd, &r.status, 8) || rd_take(&rd, &r.lat_us, 8) || iso_of(r.us, iso)
        || rd_sv(&rd, &r.request_id) || rd_sv(&rd, &r.client_id) || rd_sv(&rd, &r.service_id)
        || rd_sv(&rd, &r.operation) || rd_sv(&rd, &r.operator_id) || rd_sv(&rd, &r.province) || rd_sv(&rd, &r.method)
        || rd_sv(&rd, &r.path) || rd_sv(&rd, &r.gateway_error) || !r.request_id.p || !r.method.p || !r.path.p
        || rd_take(&rd, &n_att, 4) || n_att > MAX_ATT)
        goto bad;
    r.n_att = (int)n_att;
    for (uint32_t i = 0; i < n_att; i++) {
        att_t *a = &r.att[i];
        unsigned char hs;
        if (rd_sv(&rd, &a->op) || rd_sv(&rd, &a->outcome) || !a->op.p || !a->outcome.p || rd_take(&rd, &hs, 1)
            || rd_take(&rd, &a->status, 8) || rd_take(&rd, &a->lat_us, 8))
            goto bad;
        a->has_status = hs != 0;
    }
    sv_t A, B;
    if (rd_sv(&rd, &A) || rd_sv(&rd, &B) || !A.p || !B.p || rd.p != rd.end) goto bad;
    if (flags & 1) {
        r.req_d = A;
        r.resp_d = B;
    } else {
        unsigned char raw[32];
        if (sha256_hex(A.p, A.n, NULL, 0, raw, r.req_hex) || sha256_hex(B.p, B.n, NULL, 0, raw, r.resp_hex)) goto bad;
        r.req_d.p = r.req_hex; r.req_d.n = 64;
        r.resp_d.p = r.resp_hex; r.resp_d.n = 64;
    }
    PyObject *rid = NULL, *cid = NULL, *us_o = NULL, *res = NULL;
    if ((rid = PyUnicode_DecodeUTF8(r.request_id.p, r.request_id.n, NULL))
        && (cid = r.client_id.p ? PyUnicode_DecodeUTF8(r.client_id.p, r.client_id.n, NULL) : (Py_INCREF(Py_None), Py_None))
        && (us_o = PyLong_FromLongLong(r.us)))
        res = encoded_of(&r, rid, cid, us_o);
    Py_XDECREF(rid);
    Py_XDECREF(cid);
    Py_XDECREF(us_o);
    if (!res && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        goto bad;
    }
    return res;
bad:
    PyErr_SetString(PyExc_ValueError, "damaged native exchange-log data");
    return NULL;
}

static PyObject *configure(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *typ;
    Py_ssize_t body_max;
    if (!PyArg_ParseTuple(args, "On", &typ, &body_max)) return NULL;
    if (!PyType_Check(typ) || !PyType_IsSubtype((PyTypeObject *)typ, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Encoded must be a tuple subclass");
        return NULL;
    }
    Py_INCREF(typ);
    Py_XSETREF(encoded_type, (PyTypeObject *)typ);
    defer_body_max = body_max;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"encode_packed", encode_packed, METH_O,
     "encode_packed(t) -> Encoded | None: record.encode_packed_py(t) in C, or None outside the fast path."},
    {"pack_native", pack_native, METH_O, "pack_native(exchange) -> bytes | None: the exchange in native form, or None."},
    {"encode_native", encode_native, METH_O, "encode_native(data) -> Encoded; ValueError for damaged data."},
    {"configure", configure, METH_VARARGS, "configure(Encoded, defer_body_max): called once by record.py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastrecord", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__fastrecord(void) {
    PyDateTime_IMPORT;
    if (!PyDateTimeAPI) return NULL;
    md_ctx = EVP_MD_CTX_new();
    str_exchange = PyUnicode_InternFromString("exchange");
    if (!md_ctx || !str_exchange) return PyErr_NoMemory();
#define NAME(v, s) if (!(v = PyUnicode_InternFromString(s))) return NULL
    NAME(A_request_id, "request_id"); NAME(A_time, "time"); NAME(A_client_id, "client_id");
    NAME(A_service_id, "service_id"); NAME(A_operation, "operation"); NAME(A_operator_id, "operator_id");
    NAME(A_caller_province, "caller_province"); NAME(A_method, "method"); NAME(A_path, "path");
    NAME(A_status, "status"); NAME(A_latency_ms, "latency_ms"); NAME(A_attempts, "attempts");
    NAME(A_gateway_error, "gateway_error"); NAME(A_request_digest, "request_digest");
    NAME(A_response_digest, "response_digest"); NAME(A_request_body, "request_body");
    NAME(A_response_body, "response_body"); NAME(A_digest_input, "digest_input"); NAME(A_outcome, "outcome");
    return PyModule_Create(&module);
}
