/*
 * enforce_sdk.native._gate: the SDK's read path for everything that needs no I/O,
 * in one native call per check() / check_many() / filter().
 *
 * What it answers (docs/native.md, "The native gate"): an item whose keys (its own
 * and its links': link, creator, image, board) are each surely unlabeled (absent
 * from the bloom filter, canonical as sent) or a fresh negative cache entry, with
 * the surface's "no label applies" decision; and an item without links whose fresh
 * cache entry holds a memoised decision for the surface, with that decision.
 * Everything else is left undone (None) for the Python read path, which stays the
 * reference: the gate never decides differently, it only decides less.
 *
 * It reads state the Python runtime pushes to it (surfaces, the bloom filter's
 * layers, their freshness deadline, the label cache's dict), holds the GIL
 * throughout and keeps a reference to everything it reads for the length of a call,
 * so a config or filter swap from another thread (possible whenever it calls back
 * into Python: a custom clock, a link parser) cannot free what a call is using.
 * It starts no thread and holds no lock: a forked child goes on with a copy.
 *
 * Built with the limited API (abi3, like _enforce_native); the bloom code is
 * enforce_native.c itself, included here so sig64 and the block probe inline.
 */
#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x030B0000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <time.h>

#include "enforce_native.c"

#define GATE_MAX_LAYERS 16
#define GATE_BUCKETS 40     /* latency histogram: bucket i holds [2^(i-1), 2^i) ns */
#define GATE_SAMPLE 64      /* one call in this many is timed; it counts for all */
#define GATE_LINK_KINDS 4   /* image, domain, creator, board: bits 1, 2, 4, 8 */
#define GATE_MAX_MEMO_VALUE 512    /* longest link value or raw key remembered with its key */
#define GATE_MAX_MEMO_ENTRIES 16384 /* per memo; a memo is emptied when full */
#define GATE_MAX_LINKS 8
#define GATE_MAX_CLEARED 8192     /* "no label applies" decisions kept per surface */
#define GATE_PREFETCH 8            /* page items whose filter block is loaded ahead */
#define GATE_MAX_RAW_KEY 1024      /* model/keys.MAX_RAW_KEY_LENGTH: longer keys are refused */

enum { N_CHECKS, N_BLOOM_NEGATIVES, N_CACHE_HITS, N_NEGATIVE_HITS, N_MEMO_HITS, N_COUNTERS };

typedef int (*descr_set_fn)(PyObject *, PyObject *, PyObject *);

typedef struct {
    PyObject_HEAD
    PyObject *surfaces;     /* dict: surface name -> spec tuple (see SPEC_*) */
    PyObject *entries;      /* the label cache's dict: canonical key -> entry tuple */
    PyObject *bloom_owner;  /* keeps the layers' filters alive; NULL: no filter */
    const enf_bloom *layers[GATE_MAX_LAYERS];
    int nlayers;
    double fresh_until;     /* the filter is stale when the timer passes this */
    PyObject *timer;        /* NULL: CLOCK_MONOTONIC (time.monotonic) */
    PyObject *wall;         /* NULL: CLOCK_REALTIME (time.time) */
    PyObject *related_key;  /* callable(kind, value) -> canonical key */
    PyObject *canonical;    /* callable(raw) -> canonical key (model/keys.canonical_key) */
    PyObject *canon_memo;   /* dict: raw key not canonical as sent -> its canonical key */
    PyObject *memo[GATE_LINK_KINDS]; /* per link kind: dict value -> canonical key */
    PyObject *entity_descr; /* Decision's `entity` slot descriptor */
    descr_set_fn set_entity;
    PyObject *visible_name; /* "visible" */
    PyObject *fallback;     /* check(entity, surface, related) of the Python path, for bound() */
    uint64_t counters[N_COUNTERS];
    uint64_t hist[GATE_BUCKETS];
    uint64_t hist_count, hist_total_ns;
    uint64_t calls;
} Gate;

/* A surface's spec tuple, built by client/native_gate.py. */
enum { SPEC_STATE, SPEC_CLEAR_CLS, SPEC_TRUST, SPEC_RELATED, SPEC_VISIBLE_STUB, SPEC_CLEARED,
       SPEC_LEN };

static const char *const LINK_NAMES[GATE_LINK_KINDS] = {"image", "domain", "creator", "board"};

/* ---- clocks ------------------------------------------------------------------------- */

/* The cache's deadlines and the filter's staleness are seconds apart: the coarse
 * monotonic clock (the same clock, read without the TSC: a few ms of resolution) is
 * enough and costs a third. Label expiry (the memo) reads the precise wall clock. */
#ifdef CLOCK_MONOTONIC_COARSE
#define GATE_MONOTONIC CLOCK_MONOTONIC_COARSE
#else
#define GATE_MONOTONIC CLOCK_MONOTONIC
#endif

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* The value of a Python clock (or the C one); -1 with an exception set on failure. */
static int read_clock(PyObject *fn, clockid_t id, double *out)
{
    if (fn == NULL) {
        *out = clock_seconds(id);
        return 0;
    }
    PyObject *v = PyObject_CallNoArgs(fn);
    if (v == NULL) return -1;
    double d = PyFloat_AsDouble(v);
    Py_DECREF(v);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    *out = d;
    return 0;
}

/* ---- keys --------------------------------------------------------------------------- */

/* Whether the UTF-8 bytes s[0:n] are a key canonical_key() returns unchanged on its fast
 * path: `kind:id` with kind [a-z][a-z0-9_]{0,31}, not domain; id 1..256 printable ASCII
 * ([!-~]), and for image lower-case hex. Mirrors model/keys.CANONICAL_PATTERN. */
static int fast_canonical(const char *s, Py_ssize_t n)
{
    if (n < 3 || s[0] < 'a' || s[0] > 'z') return 0;
    Py_ssize_t i = 1;
    while (i < n && s[i] != ':') {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return 0;
        if (++i > 32) return 0;
    }
    Py_ssize_t idlen = n - i - 1;
    if (i >= n || idlen < 1 || idlen > 256) return 0;
    const char *id = s + i + 1;
    if (i == 6 && memcmp(s, "domain", 6) == 0) return 0;
    if (i == 5 && memcmp(s, "image", 5) == 0) {
        for (Py_ssize_t j = 0; j < idlen; j++) {
            char c = id[j];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return 0;
        }
        return 1;
    }
    for (Py_ssize_t j = 0; j < idlen; j++) {
        unsigned char c = (unsigned char)id[j];
        if (c < '!' || c > '~') return 0;
    }
    return 1;
}

/* ---- one call's view of the gate ------------------------------------------------------ */

typedef struct {
    Gate *g;
    PyObject *owner;        /* a reference to the filter's owner, held for the call */
    const enf_bloom *layers[GATE_MAX_LAYERS];
    int nlayers;
    uint64_t seed;
    int use_bloom;          /* probe the filter (present, and trusted or current) */
    int stale;              /* the filter is stale (and trusted): its negatives need a flag */
    double now;             /* the cache's timer */
    double wall;            /* epoch seconds, read on the first memo hit */
    int have_wall;
    uint64_t counts[N_COUNTERS];
} Call;

static int call_begin(Gate *g, PyObject *spec, Call *c)
{
    c->g = g;
    c->owner = NULL;
    c->nlayers = 0;
    c->use_bloom = c->stale = c->have_wall = 0;
    memset(c->counts, 0, sizeof(c->counts));
    if (read_clock(g->timer, GATE_MONOTONIC, &c->now) < 0) return -1;
    if (g->bloom_owner != NULL && g->nlayers > 0) {
        int trust = PyTuple_GetItem(spec, SPEC_TRUST) == Py_True;
        int stale = c->now > g->fresh_until;
        if (!stale || trust) {
            c->owner = Py_NewRef(g->bloom_owner);
            c->nlayers = g->nlayers;
            memcpy(c->layers, g->layers, (size_t)g->nlayers * sizeof(c->layers[0]));
            c->seed = c->layers[0]->seed;
            c->use_bloom = 1;
            c->stale = stale;
        }
    }
    return 0;
}

static void call_end(Call *c, int commit, Py_ssize_t answered)
{
    Py_XDECREF(c->owner);
    c->owner = NULL;
    if (!commit) return;
    Gate *g = c->g;
    c->counts[N_CHECKS] = (uint64_t)answered;
    for (int i = 0; i < N_COUNTERS; i++) g->counters[i] += c->counts[i];
}

static int bloom_has(const Call *c, const char *s, Py_ssize_t n)
{
    uint64_t sig = sig64((const uint8_t *)s, (size_t)n, c->seed);
    for (int i = 0; i < c->nlayers; i++)
        if (block_has(block_ptr(c->layers[i], sig), sig, c->layers[i]->k)) return 1;
    return 0;
}

/* Start loading the filter block of a page item a few items ahead, so the memory
 * latency of a page's probes overlaps (as enf_bloom_contains_sigs does). */
static void prefetch_key(const Call *c, PyObject *key)
{
    if (!PyUnicode_CheckExact(key)) return;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(key, &n);
    if (s == NULL) {
        PyErr_Clear();
        return;
    }
    uint64_t sig = sig64((const uint8_t *)s, (size_t)n, c->seed);
    ENF_PREFETCH_R(block_ptr(c->layers[0], sig));
}

enum { KEY_EMPTY, KEY_MEMO, KEY_UNDONE, KEY_ERROR };

/* What the gate knows of one canonical key without I/O. With `memo_for` (an item without links), a fresh labeled
 * entry's memoised decision for that surface state is returned in *decision (new
 * reference). Counts into `counts` (the item's, committed only if it is answered). */
static int key_state(Call *c, PyObject *key, const char *s, Py_ssize_t n, PyObject *memo_for,
                     PyObject **decision, uint64_t counts[N_COUNTERS])
{
    if (s == NULL) {  /* not read yet: its UTF-8 bytes */
        s = PyUnicode_AsUTF8AndSize(key, &n);
        if (s == NULL) {  /* a lone surrogate: the Python path explains it */
            PyErr_Clear();
            return KEY_UNDONE;
        }
    }
    if (c->use_bloom && !bloom_has(c, s, n)) {
        if (c->stale) return KEY_UNDONE;             /* the answer needs a degraded flag */
        counts[N_BLOOM_NEGATIVES]++;
        return KEY_EMPTY;
    }
    PyObject *entry = PyDict_GetItemWithError(c->g->entries, key);
    if (entry == NULL) {
        if (PyErr_Occurred()) return KEY_ERROR;
        return KEY_UNDONE;
    }
    if (!PyTuple_Check(entry) || PyTuple_Size(entry) != 4) return KEY_UNDONE;
    Py_INCREF(entry);
    int result = KEY_UNDONE;
    double fresh = PyFloat_AsDouble(PyTuple_GetItem(entry, 1));
    if (fresh == -1.0 && PyErr_Occurred()) {
        result = KEY_ERROR;
        goto done;
    }
    if (!(fresh > c->now)) goto done;
    PyObject *labels = PyTuple_GetItem(entry, 0);
    if (PyTuple_Check(labels) && PyTuple_Size(labels) == 0) {
        counts[N_CACHE_HITS]++;
        counts[N_NEGATIVE_HITS]++;
        result = KEY_EMPTY;
        goto done;
    }
    if (memo_for == NULL) goto done;
    PyObject *memo = PyTuple_GetItem(entry, 3);
    if (!PyDict_Check(memo)) goto done;
    PyObject *hit = PyDict_GetItemWithError(memo, memo_for);
    if (hit == NULL) {
        if (PyErr_Occurred()) result = KEY_ERROR;
        goto done;
    }
    if (!PyTuple_Check(hit) || PyTuple_Size(hit) != 2) goto done;
    Py_INCREF(hit);
    if (!c->have_wall) {
        if (read_clock(c->g->wall, CLOCK_REALTIME, &c->wall) < 0) {
            Py_DECREF(hit);
            result = KEY_ERROR;
            goto done;
        }
        c->have_wall = 1;
    }
    double until = PyFloat_AsDouble(PyTuple_GetItem(hit, 1));
    if (until == -1.0 && PyErr_Occurred()) {
        Py_DECREF(hit);
        result = KEY_ERROR;
        goto done;
    }
    if (until > c->wall) {
        *decision = Py_NewRef(PyTuple_GetItem(hit, 0));
        counts[N_CACHE_HITS]++;
        counts[N_MEMO_HITS]++;
        result = KEY_MEMO;
    }
    Py_DECREF(hit);
done:
    Py_DECREF(entry);
    return result;
}

/* The canonical key of a raw item key that is not canonical as sent (`PIN:1`, a
 * `domain:` key, whitespace around it), new reference: from the memo, or from the
 * Python canonical_key() on a miss. NULL with no exception: the Python path must
 * decide (a malformed key raises there). */
static PyObject *canonical_of(Gate *g, PyObject *raw)
{
    PyObject *memo = g->canon_memo;
    PyObject *key = PyDict_GetItemWithError(memo, raw);
    if (key != NULL) return Py_NewRef(key);
    if (PyErr_Occurred() || g->canonical == NULL || PyUnicode_GetLength(raw) > GATE_MAX_RAW_KEY) {
        /* longer keys are refused by canonical_key: the Python path says so */
        PyErr_Clear();
        return NULL;
    }
    Py_INCREF(memo);
    key = PyObject_CallFunctionObjArgs(g->canonical, raw, NULL);
    if (key == NULL || !PyUnicode_CheckExact(key)) {
        PyErr_Clear();
        Py_XDECREF(key);
        Py_DECREF(memo);
        return NULL;
    }
    if (PyUnicode_GetLength(raw) <= GATE_MAX_MEMO_VALUE) {
        if (PyDict_Size(memo) >= GATE_MAX_MEMO_ENTRIES) PyDict_Clear(memo);
        if (PyDict_SetItem(memo, raw, key) < 0) PyErr_Clear();
    }
    Py_DECREF(memo);
    return key;
}

/* ---- links ---------------------------------------------------------------------------- */

/* The link kind index of a name in `related` (aliases: user = creator), or -1. */
static int link_kind(PyObject *name)
{
    if (!PyUnicode_CheckExact(name)) return -1;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(name, &n);
    if (s == NULL) {
        PyErr_Clear();
        return -1;
    }
    for (int i = 0; i < GATE_LINK_KINDS; i++)
        if ((Py_ssize_t)strlen(LINK_NAMES[i]) == n && memcmp(s, LINK_NAMES[i], (size_t)n) == 0)
            return i;
    if (n == 4 && memcmp(s, "user", 4) == 0) return 2 | 0x100; /* creator, given as alias */
    return -1;
}

/* The canonical key of a link value (new reference), from the memo or the Python
 * parser; NULL with no exception: the Python path must decide (a bad link, misuse). */
static PyObject *link_key(Gate *g, int kind, PyObject *value)
{
    PyObject *memo = g->memo[kind];
    PyObject *key = PyDict_GetItemWithError(memo, value);
    if (key != NULL) return Py_NewRef(key);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    if (g->related_key == NULL) return NULL;
    PyObject *kind_name = PyUnicode_FromString(LINK_NAMES[kind]);
    if (kind_name == NULL) {
        PyErr_Clear();
        return NULL;
    }
    Py_INCREF(memo);
    key = PyObject_CallFunctionObjArgs(g->related_key, kind_name, value, NULL);
    Py_DECREF(kind_name);
    if (key == NULL || !PyUnicode_CheckExact(key)) {
        PyErr_Clear();
        Py_XDECREF(key);
        Py_DECREF(memo);
        return NULL;
    }
    if (PyUnicode_GetLength(value) <= GATE_MAX_MEMO_VALUE) {
        if (PyDict_Size(memo) >= GATE_MAX_MEMO_ENTRIES) PyDict_Clear(memo);
        if (PyDict_SetItem(memo, value, key) < 0) PyErr_Clear();
    }
    Py_DECREF(memo);
    return key;
}

/* The canonical keys of an item's links the surface counts, into keys[] (new
 * references); returns how many, or -1: the Python path must decide the item. */
static int item_links(Gate *g, PyObject *related, long mask, PyObject *keys[GATE_MAX_LINKS])
{
    int n = 0, seen = 0;
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (PyDict_Next(related, &pos, &name, &value)) {
        int kind = link_kind(name);
        if (kind < 0) goto undone;                    /* an unknown kind: misuse */
        int bit = 1 << (kind & 0xff);
        if (seen & bit) goto undone;                  /* user and creator both given */
        seen |= bit;
        kind &= 0xff;
        if (!(mask & bit) || value == Py_None) continue;
        if (!PyUnicode_CheckExact(value) || n == GATE_MAX_LINKS) goto undone;
        Py_INCREF(value);
        PyObject *key = link_key(g, kind, value);
        Py_DECREF(value);
        if (key == NULL) goto undone;
        keys[n++] = key;
    }
    return n;
undone:
    for (int i = 0; i < n; i++) Py_DECREF(keys[i]);
    return -1;
}

/* Whether a `related` entry of a surface without links is valid (then ignored). */
static int links_valid(PyObject *related)
{
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    int seen = 0;
    while (PyDict_Next(related, &pos, &name, &value)) {
        int kind = link_kind(name);
        if (kind < 0) return 0;
        int bit = 1 << (kind & 0xff);
        if (seen & bit) return 0;
        seen |= bit;
    }
    return 1;
}

/* ---- one item ------------------------------------------------------------------------- */

/* Decide one item: *out gets a new reference to its decision, or NULL (undone).
 * `stub`: the surface's shared visible decision is enough (filter). -1 on error. */
static int decide_item(Call *c, PyObject *spec, PyObject *entity, PyObject *related, int stub,
                       PyObject **out)
{
    *out = NULL;
    if (!PyUnicode_CheckExact(entity)) return 0;
    long mask = 0;
    if (related != Py_None) {
        if (!PyDict_CheckExact(related)) return 0;
        mask = PyLong_AsLong(PyTuple_GetItem(spec, SPEC_RELATED));
        if (mask == -1 && PyErr_Occurred()) return -1;
        if (mask == 0 && !links_valid(related)) return 0;
        if (mask == 0 || PyDict_Size(related) == 0) related = Py_None;
    }
    uint64_t counts[N_COUNTERS] = {0};
    PyObject *decision = NULL;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(entity, &n);
    if (s == NULL) {  /* a lone surrogate: the Python path explains it */
        PyErr_Clear();
        return 0;
    }
    int as_sent = fast_canonical(s, n);
    if (as_sent) {
        Py_INCREF(entity);
    } else {
        s = NULL;  /* the canonical key's bytes are read by key_state */
        /* Decided as its canonical key, as the Python path decides it; never from a memo
         * (the Python path resolves such a key afresh). */
        entity = canonical_of(c->g, entity);
        if (entity == NULL) return 0;
    }
    int st;
    if (related == Py_None) {
        PyObject *memo_for = as_sent ? PyTuple_GetItem(spec, SPEC_STATE) : NULL;
        st = key_state(c, entity, s, n, memo_for, &decision, counts);
        if (st == KEY_MEMO) {
            Py_DECREF(entity);
            *out = decision;
            goto answered;
        }
    } else {
        PyObject *keys[GATE_MAX_LINKS];
        int nkeys = item_links(c->g, related, mask, keys);
        if (nkeys < 0) {
            Py_DECREF(entity);
            return 0;
        }
        st = key_state(c, entity, s, n, NULL, &decision, counts);
        for (int i = 0; i < nkeys; i++) {
            if (st == KEY_EMPTY) st = key_state(c, keys[i], NULL, 0, NULL, &decision, counts);
            Py_DECREF(keys[i]);
        }
    }
    if (st != KEY_EMPTY) {
        Py_DECREF(entity);
        return st == KEY_ERROR ? -1 : 0;
    }
    /* every key is surely unlabeled: the surface's "no label applies" decision */
    if (stub) {
        *out = Py_NewRef(PyTuple_GetItem(spec, SPEC_VISIBLE_STUB));
    } else {
        /* Decisions are immutable and this one depends on the surface and the key only:
         * the surface keeps the recent ones (allocating one costs more than the rest of
         * the check). The dict is new with every config, so a swap starts it afresh. */
        PyObject *cleared = PyTuple_GetItem(spec, SPEC_CLEARED);
        PyObject *d = PyDict_GetItemWithError(cleared, entity);
        if (d != NULL) {
            *out = Py_NewRef(d);
        } else {
            if (PyErr_Occurred()) {
                Py_DECREF(entity);
                return -1;
            }
            PyTypeObject *cls = (PyTypeObject *)PyTuple_GetItem(spec, SPEC_CLEAR_CLS);
            allocfunc alloc = (allocfunc)PyType_GetSlot(cls, Py_tp_alloc);
            d = alloc(cls, 0);
            if (d == NULL || c->g->set_entity(c->g->entity_descr, d, entity) < 0) {
                Py_XDECREF(d);
                Py_DECREF(entity);
                return -1;
            }
            if (PyDict_Size(cleared) >= GATE_MAX_CLEARED) PyDict_Clear(cleared);
            if (PyDict_SetItem(cleared, entity, d) < 0) PyErr_Clear();
            *out = d;
        }
    }
    Py_DECREF(entity);
answered:
    for (int i = 0; i < N_COUNTERS; i++) c->counts[i] += counts[i];
    return 0;
}

/* ---- the calls ------------------------------------------------------------------------ */

static PyObject *surface_spec(Gate *g, PyObject *surface)
{
    if (g->surfaces == NULL || !PyUnicode_CheckExact(surface)) return NULL;
    PyObject *spec = PyDict_GetItemWithError(g->surfaces, surface);
    if (spec == NULL) PyErr_Clear();
    return spec;
}

static void record_latency(Gate *g, uint64_t t0)
{
    uint64_t ns = clock_ns() - t0;
    int i = ns ? 64 - __builtin_clzll(ns) : 0;
    if (i >= GATE_BUCKETS) i = GATE_BUCKETS - 1;
    g->hist[i] += GATE_SAMPLE;
    g->hist_count += GATE_SAMPLE;
    g->hist_total_ns += ns * GATE_SAMPLE;
}

/* check(entity, surface, related) -> Decision, or None: take the Python path. */
static PyObject *gate_check(Gate *g, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "check(entity, surface, related)");
        return NULL;
    }
    uint64_t t0 = (++g->calls % GATE_SAMPLE) == 0 ? clock_ns() : 0;
    PyObject *surfaces = g->surfaces;
    PyObject *spec = surface_spec(g, args[1]);
    if (spec == NULL) Py_RETURN_NONE;
    Py_INCREF(surfaces);
    Call c;
    PyObject *decision = NULL;
    int rc = call_begin(g, spec, &c);
    if (rc == 0) rc = decide_item(&c, spec, args[0], args[2], 0, &decision);
    call_end(&c, rc == 0 && decision != NULL, 1);
    Py_DECREF(surfaces);
    if (rc < 0) return NULL;
    if (decision == NULL) Py_RETURN_NONE;
    if (t0) record_latency(g, t0);
    return decision;
}

/* The client's check(entity, surface, related=None), bound by `bound()`: the gate's
 * answer, else the Python path's (`fallback`). Arguments as check() takes them. */
static PyObject *bound_check(Gate *g, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[3] = {"entity", "surface", "related"};
    PyObject *argv[3] = {NULL, NULL, Py_None};
    if (nargs > 3) goto usage;
    for (Py_ssize_t i = 0; i < nargs; i++) argv[i] = args[i];
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_Size(kwnames);
        for (Py_ssize_t j = 0; j < nkw; j++) {
            PyObject *name = PyTuple_GetItem(kwnames, j);
            int slot = -1;
            for (int k = 0; k < 3; k++)
                if (PyUnicode_CompareWithASCIIString(name, names[k]) == 0) slot = k;
            if (slot < 0 || slot < nargs) goto usage;
            argv[slot] = args[nargs + j];
        }
    }
    if (argv[0] == NULL || argv[1] == NULL) goto usage;
    PyObject *three[3] = {argv[0], argv[1], argv[2]};
    PyObject *decision = gate_check(g, three, 3);
    if (decision != Py_None) return decision;
    Py_DECREF(decision);
    if (g->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the gate has no fallback");
        return NULL;
    }
    return PyObject_CallFunctionObjArgs(g->fallback, argv[0], argv[1], argv[2], NULL);
usage:
    PyErr_SetString(PyExc_TypeError,
                    "check() takes entity, surface and an optional related, by position or name");
    return NULL;
}

static PyMethodDef bound_check_def = {
    "check", (PyCFunction)(void (*)(void))bound_check, METH_FASTCALL | METH_KEYWORDS,
    "check(entity, surface, related=None) -> Decision"};

/* bound(fallback) -> a callable check(entity, surface, related=None) answered by the
 * gate, or by fallback (the Python path) when the gate leaves it. */
static PyObject *gate_bound(Gate *g, PyObject *fallback)
{
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    PyObject *old = g->fallback;
    g->fallback = Py_NewRef(fallback);
    Py_XDECREF(old);
    return PyCFunction_NewEx(&bound_check_def, (PyObject *)g, NULL);
}

static PyObject *item_at(PyObject *seq, Py_ssize_t i)
{
    return PyList_Check(seq) ? PyList_GetItem(seq, i) : PyTuple_GetItem(seq, i);
}

/* Decide a page into `out` (a list of n Nones); returns how many were answered, or -1. */
static Py_ssize_t decide_page(Gate *g, PyObject *spec, PyObject *keys, PyObject *rels,
                              Py_ssize_t n, int stub, PyObject *out)
{
    if (rels != NULL) {
        /* A page the Python path refuses (an entry that is not a dict of link kinds) is
         * refused whole there, before anything is counted: leave all of it. */
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *rel = item_at(rels, i);
            if (rel != Py_None && (!PyDict_CheckExact(rel) || !links_valid(rel))) return 0;
        }
    }
    Call c;
    if (call_begin(g, spec, &c) < 0) return -1;
    Py_ssize_t answered = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (c.use_bloom && i + GATE_PREFETCH < n) prefetch_key(&c, item_at(keys, i + GATE_PREFETCH));
        PyObject *key = item_at(keys, i);
        PyObject *rel = rels == NULL ? Py_None : item_at(rels, i);
        Py_INCREF(key);
        Py_INCREF(rel);
        PyObject *decision;
        int rc = decide_item(&c, spec, key, rel, stub, &decision);
        Py_DECREF(key);
        Py_DECREF(rel);
        if (rc < 0) {
            call_end(&c, 0, 0);
            return -1;
        }
        if (decision != NULL) {
            PyList_SetItem(out, i, decision); /* steals; replaces None */
            answered++;
        }
    }
    call_end(&c, 1, answered);
    return answered;
}

static int is_page(PyObject *o) { return PyList_Check(o) || PyTuple_Check(o); }

static Py_ssize_t page_len(PyObject *o)
{
    return PyList_Check(o) ? PyList_Size(o) : PyTuple_Size(o);
}

static PyObject *nones(Py_ssize_t n)
{
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) PyList_SetItem(out, i, Py_NewRef(Py_None));
    return out;
}

/* check_many(entities, surface, related) -> (decisions with None where undone, undone
 * count), or None: take the Python path (it validates what the gate does not read). */
static PyObject *gate_check_many(Gate *g, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "check_many(entities, surface, related)");
        return NULL;
    }
    PyObject *keys = args[0], *rels = args[2];
    if (!is_page(keys)) Py_RETURN_NONE;
    Py_ssize_t n = page_len(keys);
    if (rels != Py_None && (!is_page(rels) || page_len(rels) != n)) Py_RETURN_NONE;
    uint64_t t0 = (++g->calls % GATE_SAMPLE) == 0 ? clock_ns() : 0;
    PyObject *surfaces = g->surfaces;
    PyObject *spec = surface_spec(g, args[1]);
    if (spec == NULL) Py_RETURN_NONE;
    Py_INCREF(surfaces);
    PyObject *out = nones(n);
    Py_ssize_t answered = out == NULL ? -1
        : decide_page(g, spec, keys, rels == Py_None ? NULL : rels, n, 0, out);
    Py_DECREF(surfaces);
    if (answered < 0) {
        Py_XDECREF(out);
        return NULL;
    }
    if (t0 && answered == n) record_latency(g, t0);
    return Py_BuildValue("(Nn)", out, n - answered);
}

/* filter(items, surface, key, related) -> the visible items, or (page, keys, related,
 * decisions) for the Python path to finish (None where undone), or None before the
 * items were read: take the Python path. `key` and `related` are called as filter()
 * calls them; an exception they raise propagates as it would there. */
static PyObject *gate_filter(Gate *g, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "filter(items, surface, key, related)");
        return NULL;
    }
    PyObject *key_fn = args[2], *rel_fn = args[3];
    uint64_t t0 = (++g->calls % GATE_SAMPLE) == 0 ? clock_ns() : 0;
    PyObject *surfaces = g->surfaces;
    PyObject *spec = surface_spec(g, args[1]);
    if (spec == NULL) Py_RETURN_NONE;
    Py_INCREF(surfaces);
    PyObject *page = NULL, *keys = NULL, *rels = NULL, *out = NULL, *result = NULL;
    page = PySequence_List(args[0]);
    if (page == NULL) goto done;
    Py_ssize_t n = PyList_Size(page);
    int key_is_str = key_fn == (PyObject *)&PyUnicode_Type;
    keys = PyList_New(n);
    if (keys == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GetItem(page, i);
        PyObject *k = key_is_str && PyUnicode_CheckExact(item)
            ? Py_NewRef(item) : PyObject_CallFunctionObjArgs(key_fn, item, NULL);
        if (k == NULL) goto done;
        PyList_SetItem(keys, i, k);
    }
    if (rel_fn != Py_None) {
        rels = PyList_New(n);
        if (rels == NULL) goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *r = PyObject_CallFunctionObjArgs(rel_fn, PyList_GetItem(page, i), NULL);
            if (r == NULL) goto done;
            PyList_SetItem(rels, i, r);
        }
    }
    out = nones(n);
    if (out == NULL) goto done;
    Py_ssize_t answered = decide_page(g, spec, keys, rels, n, 1, out);
    if (answered < 0) goto done;
    if (answered < n) {
        result = Py_BuildValue("(OOOO)", page, keys, rels == NULL ? Py_None : rels, out);
        goto done;
    }
    result = PyList_New(0);
    if (result == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyList_GetItem(out, i);
        int visible = d == PyTuple_GetItem(spec, SPEC_VISIBLE_STUB) ? 1 : -2;
        if (visible == -2) {
            PyObject *v = PyObject_GetAttr(d, g->visible_name);
            if (v == NULL) goto fail;
            visible = PyObject_IsTrue(v);
            Py_DECREF(v);
            if (visible < 0) goto fail;
        }
        if (visible && PyList_Append(result, PyList_GetItem(page, i)) < 0) goto fail;
    }
    if (t0) record_latency(g, t0);
    goto done;
fail:
    Py_CLEAR(result);
done:
    Py_XDECREF(page);
    Py_XDECREF(keys);
    Py_XDECREF(rels);
    Py_XDECREF(out);
    Py_DECREF(surfaces);
    return result;
}

/* ---- state pushed from Python --------------------------------------------------------- */

static PyObject *gate_set_surfaces(Gate *g, PyObject *surfaces)
{
    if (!PyDict_Check(surfaces)) {
        PyErr_SetString(PyExc_TypeError, "surfaces must be a dict");
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *name, *spec;
    while (PyDict_Next(surfaces, &pos, &name, &spec)) {
        if (!PyTuple_Check(spec) || PyTuple_Size(spec) != SPEC_LEN
            || !PyType_Check(PyTuple_GetItem(spec, SPEC_CLEAR_CLS))
            || !PyLong_Check(PyTuple_GetItem(spec, SPEC_RELATED))
            || !PyDict_CheckExact(PyTuple_GetItem(spec, SPEC_CLEARED))) {
            PyErr_SetString(PyExc_ValueError, "a surface spec must be "
                            "(state, clear_cls, trust, related_mask, visible_stub, {})");
            return NULL;
        }
    }
    PyObject *old = g->surfaces;
    g->surfaces = Py_NewRef(surfaces);
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

/* set_bloom(owner, pointers): the active filter's layers (integer addresses of their
 * enf_bloom, kept alive by `owner`), or set_bloom(None, ()) for no filter. */
static PyObject *gate_set_bloom(Gate *g, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "set_bloom(owner, pointers: tuple)");
        return NULL;
    }
    Py_ssize_t n = PyTuple_Size(args[1]);
    if (n > GATE_MAX_LAYERS || (n > 0 && args[0] == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "too many layers, or layers without an owner");
        return NULL;
    }
    const enf_bloom *layers[GATE_MAX_LAYERS] = {0};
    for (Py_ssize_t i = 0; i < n; i++) {
        void *p = PyLong_AsVoidPtr(PyTuple_GetItem(args[1], i));
        if (p == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "a null filter");
            return NULL;
        }
        layers[i] = (const enf_bloom *)p;
        if (layers[i]->seed != layers[0]->seed) {
            PyErr_SetString(PyExc_ValueError, "layers must share one seed");
            return NULL;
        }
    }
    PyObject *old = g->bloom_owner;
    g->bloom_owner = n > 0 ? Py_NewRef(args[0]) : NULL;
    memcpy(g->layers, layers, sizeof(layers));
    g->nlayers = (int)n;
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

static PyObject *gate_set_fresh_until(Gate *g, PyObject *value)
{
    double d = PyFloat_AsDouble(value);
    if (d == -1.0 && PyErr_Occurred()) return NULL;
    g->fresh_until = d;
    Py_RETURN_NONE;
}

static PyObject *gate_counters(Gate *g, PyObject *Py_UNUSED(ignored))
{
    PyObject *t = PyTuple_New(N_COUNTERS);
    if (t == NULL) return NULL;
    for (int i = 0; i < N_COUNTERS; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(g->counters[i]);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SetItem(t, i, v);
    }
    return t;
}

static PyObject *gate_histogram(Gate *g, PyObject *Py_UNUSED(ignored))
{
    PyObject *buckets = PyList_New(GATE_BUCKETS);
    if (buckets == NULL) return NULL;
    for (int i = 0; i < GATE_BUCKETS; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(g->hist[i]);
        if (v == NULL) {
            Py_DECREF(buckets);
            return NULL;
        }
        PyList_SetItem(buckets, i, v);
    }
    return Py_BuildValue("(NKK)", buckets, (unsigned long long)g->hist_count,
                         (unsigned long long)g->hist_total_ns);
}

static PyObject *gate_reset_counters(Gate *g, PyObject *Py_UNUSED(ignored))
{
    memset(g->counters, 0, sizeof(g->counters));
    memset(g->hist, 0, sizeof(g->hist));
    g->hist_count = g->hist_total_ns = 0;
    Py_RETURN_NONE;
}

static PyObject *gate_clear_links(Gate *g, PyObject *Py_UNUSED(ignored))
{
    for (int i = 0; i < GATE_LINK_KINDS; i++) PyDict_Clear(g->memo[i]);
    PyDict_Clear(g->canon_memo);
    Py_RETURN_NONE;
}

/* ---- the type ------------------------------------------------------------------------- */

/* Gate(entries, entity_descr, canonical_key, related_key, timer, wall): timer / wall
 * None for the C clocks (the same as time.monotonic / time.time). */
static PyObject *gate_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *entries, *descr, *canonical, *related_key, *timer, *wall;
    static char *names[] = {"entries", "entity_descr", "canonical_key", "related_key", "timer",
                            "wall", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OOOOO", names, &PyDict_Type, &entries,
                                     &descr, &canonical, &related_key, &timer, &wall))
        return NULL;
    descr_set_fn set = (descr_set_fn)PyType_GetSlot(Py_TYPE(descr), Py_tp_descr_set);
    if (set == NULL) {
        PyErr_SetString(PyExc_TypeError, "entity_descr must be a settable slot descriptor");
        return NULL;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    Gate *g = (Gate *)alloc(type, 0);
    if (g == NULL) return NULL;
    g->entries = Py_NewRef(entries);
    g->entity_descr = Py_NewRef(descr);
    g->set_entity = set;
    g->related_key = related_key == Py_None ? NULL : Py_NewRef(related_key);
    g->canonical = canonical == Py_None ? NULL : Py_NewRef(canonical);
    g->canon_memo = PyDict_New();
    g->timer = timer == Py_None ? NULL : Py_NewRef(timer);
    g->wall = wall == Py_None ? NULL : Py_NewRef(wall);
    g->fresh_until = -INFINITY;
    g->visible_name = PyUnicode_InternFromString("visible");
    for (int i = 0; i < GATE_LINK_KINDS; i++) g->memo[i] = PyDict_New();
    if (g->visible_name == NULL || !g->canon_memo || !g->memo[0] || !g->memo[1] || !g->memo[2] || !g->memo[3]) {
        Py_DECREF(g);
        return NULL;
    }
    return (PyObject *)g;
}

static int gate_traverse(Gate *g, visitproc visit, void *arg)
{
    Py_VISIT(g->surfaces);
    Py_VISIT(g->entries);
    Py_VISIT(g->bloom_owner);
    Py_VISIT(g->timer);
    Py_VISIT(g->wall);
    Py_VISIT(g->related_key);
    Py_VISIT(g->canonical);
    Py_VISIT(g->canon_memo);
    Py_VISIT(g->fallback);
    Py_VISIT(g->entity_descr);
    for (int i = 0; i < GATE_LINK_KINDS; i++) Py_VISIT(g->memo[i]);
    Py_VISIT(Py_TYPE((PyObject *)g));
    return 0;
}

static int gate_clear(Gate *g)
{
    Py_CLEAR(g->surfaces);
    Py_CLEAR(g->entries);
    Py_CLEAR(g->bloom_owner);
    g->nlayers = 0;
    Py_CLEAR(g->timer);
    Py_CLEAR(g->wall);
    Py_CLEAR(g->related_key);
    Py_CLEAR(g->canonical);
    Py_CLEAR(g->canon_memo);
    Py_CLEAR(g->fallback);
    Py_CLEAR(g->entity_descr);
    for (int i = 0; i < GATE_LINK_KINDS; i++) Py_CLEAR(g->memo[i]);
    return 0;
}

static void gate_dealloc(Gate *g)
{
    PyTypeObject *tp = Py_TYPE((PyObject *)g);
    PyObject_GC_UnTrack(g);
    gate_clear(g);
    Py_CLEAR(g->visible_name);
    freefunc free_fn = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    free_fn(g);
    Py_DECREF(tp);
}

static PyMethodDef gate_methods[] = {
    {"check", (PyCFunction)(void (*)(void))gate_check, METH_FASTCALL,
     "check(entity, surface, related) -> Decision, or None for the Python path."},
    {"check_many", (PyCFunction)(void (*)(void))gate_check_many, METH_FASTCALL,
     "check_many(entities, surface, related) -> (decisions, undone), or None."},
    {"filter", (PyCFunction)(void (*)(void))gate_filter, METH_FASTCALL,
     "filter(items, surface, key, related) -> visible items, (page, keys, related, "
     "decisions) to finish, or None."},
    {"bound", (PyCFunction)gate_bound, METH_O,
     "bound(fallback) -> check(entity, surface, related=None), falling back to `fallback`."},
    {"set_surfaces", (PyCFunction)gate_set_surfaces, METH_O, "Swap the surfaces' specs."},
    {"set_bloom", (PyCFunction)(void (*)(void))gate_set_bloom, METH_FASTCALL,
     "set_bloom(owner, pointers): swap the active filter's layers."},
    {"set_fresh_until", (PyCFunction)gate_set_fresh_until, METH_O,
     "The timer value past which the filter is stale."},
    {"counters", (PyCFunction)gate_counters, METH_NOARGS,
     "(checks, bloom_negatives, cache_hits, negative_hits, memo_hits) answered here."},
    {"histogram", (PyCFunction)gate_histogram, METH_NOARGS,
     "(buckets, count, total_ns) of sampled call latencies, scaled to all calls."},
    {"reset_counters", (PyCFunction)gate_reset_counters, METH_NOARGS, "Zero the counters."},
    {"clear_links", (PyCFunction)gate_clear_links, METH_NOARGS,
     "Forget remembered links and canonical keys."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot gate_slots[] = {
    {Py_tp_new, gate_new},
    {Py_tp_dealloc, gate_dealloc},
    {Py_tp_traverse, gate_traverse},
    {Py_tp_clear, gate_clear},
    {Py_tp_methods, gate_methods},
    {Py_tp_doc, "The SDK's native read path (see docs/native.md)."},
    {0, NULL},
};

static PyType_Spec gate_spec = {
    "enforce_sdk.native._gate.Gate",
    sizeof(Gate),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    gate_slots,
};

static int gate_exec(PyObject *module)
{
    PyObject *type = PyType_FromSpec(&gate_spec);
    if (type == NULL) return -1;
    if (PyModule_AddObject(module, "Gate", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    if (PyModule_AddIntConstant(module, "SAMPLE", GATE_SAMPLE) < 0) return -1;
    if (PyModule_AddIntConstant(module, "BUCKETS", GATE_BUCKETS) < 0) return -1;
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, gate_exec},
    {0, NULL},
};

static struct PyModuleDef gate_module = {
    PyModuleDef_HEAD_INIT, "_gate", "The SDK's native read path.", 0, NULL, module_slots,
    NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__gate(void) { return PyModuleDef_Init(&gate_module); }
