/*
 * H1 persistence (Z/2 coefficients) of a filtered 2-complex: the standard column reduction of the
 * triangle-by-edge boundary matrix (Edelsbrunner, Letscher, Zomorodian, "Topological persistence and
 * simplification", 2002; Zomorodian & Carlsson, "Computing persistent homology", 2005), written for
 * gendl_jax from the textbook algorithm; see geometry.py for the Python side.
 *
 * Input (already in filtration order: the caller sorts edges by (value, vertices) and triangles by
 * (value, vertices); every vertex enters before every edge, every edge before the triangles of equal
 * value, so only the order within each dimension matters):
 *   n_vertices, edges as (m, 2) vertex ids, triangles as (t, 3) edge ranks (rows of `edges`).
 * Output, per edge rank e (int64):
 *   -2  negative edge: it joins two components (kills an H0 class, creates no H1 class);
 *   -1  positive edge whose H1 class is never killed (essential in the given complex);
 *   j   positive edge whose class is killed by triangle j (the reduced column j has its pivot at e).
 *
 * Negative / positive edges come from a union-find over the vertices, edges taken in order (an edge
 * is positive iff its ends are already connected). Compression (Bauer, Kerber, Reininghaus, "Clear
 * and compress: computing persistent homology in chunks", 2014): the rows of negative edges are
 * dropped from the triangle columns, which leaves the pivots of the reduced matrix unchanged.
 * Clearing needs the next dimension (tetrahedra), which a 2-complex does not have.
 * Columns are sparse: int64 edge ranks sorted in decreasing order (the pivot first); adding a
 * column is a merge that cancels equal entries (Z/2).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int64_t uf_find(int64_t *parent, int64_t v) {
    while (parent[v] != v) {
        parent[v] = parent[parent[v]];
        v = parent[v];
    }
    return v;
}

/* out = a + b over Z/2; a, b sorted decreasing; returns the length of out. */
static int64_t add_columns(const int64_t *a, int64_t na, const int64_t *b, int64_t nb, int64_t *out) {
    int64_t i = 0, j = 0, k = 0;
    while (i < na && j < nb) {
        if (a[i] > b[j]) out[k++] = a[i++];
        else if (a[i] < b[j]) out[k++] = b[j++];
        else i++, j++;
    }
    while (i < na) out[k++] = a[i++];
    while (j < nb) out[k++] = b[j++];
    return k;
}

static int read_i64(PyObject *obj, Py_buffer *view, int64_t want, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize != 8 || view->format == NULL || (strcmp(view->format, "q") != 0 && strcmp(view->format, "l") != 0) ||
        view->len != want * 8) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous int64 buffer of %lld entries", name, (long long)want);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(h1_pairs_doc,
             "h1_pairs(n_vertices, edges, triangles, m, t) -> bytes\n\n"
             "H1 persistence pairs over Z/2 of a filtered 2-complex given in filtration order.\n"
             "edges: C-contiguous int64 (m, 2) vertex ids in [0, n_vertices); triangles: int64 (t, 3)\n"
             "edge ranks in [0, m). Returns m int64 (as bytes): -2 for a negative edge, -1 for a\n"
             "positive edge never killed, else the rank of the triangle that kills its class.");

static PyObject *h1_pairs(PyObject *self, PyObject *args) {
    Py_ssize_t nv_, m_, t_;
    PyObject *edges_o, *tri_o;
    if (!PyArg_ParseTuple(args, "nOOnn", &nv_, &edges_o, &tri_o, &m_, &t_)) return NULL;
    const int64_t nv = nv_, m = m_, t = t_;
    if (nv < 0 || m < 0 || t < 0) {
        PyErr_SetString(PyExc_ValueError, "n_vertices, m and t must be non-negative");
        return NULL;
    }
    Py_buffer ev, tv;
    if (read_i64(edges_o, &ev, 2 * m, "edges") < 0) return NULL;
    if (read_i64(tri_o, &tv, 3 * t, "triangles") < 0) {
        PyBuffer_Release(&ev);
        return NULL;
    }
    const int64_t *E = ev.buf, *T = tv.buf;
    PyObject *out = NULL;
    int64_t *parent = NULL, *status = NULL, *owner = NULL, *len = NULL, *scratch = NULL, *work = NULL;
    int64_t **cols = NULL;
    for (int64_t e = 0; e < 2 * m; e++)
        if (E[e] < 0 || E[e] >= nv) {
            PyErr_Format(PyExc_ValueError, "edges: vertex id %lld out of range [0, %lld)", (long long)E[e], (long long)nv);
            goto done;
        }
    for (int64_t j = 0; j < 3 * t; j++)
        if (T[j] < 0 || T[j] >= m) {
            PyErr_Format(PyExc_ValueError, "triangles: edge rank %lld out of range [0, %lld)", (long long)T[j], (long long)m);
            goto done;
        }
    parent = malloc((size_t)(nv > 0 ? nv : 1) * sizeof(int64_t));
    status = malloc((size_t)(m > 0 ? m : 1) * sizeof(int64_t));
    owner = malloc((size_t)(m > 0 ? m : 1) * sizeof(int64_t));
    len = calloc((size_t)(t > 0 ? t : 1), sizeof(int64_t));
    cols = calloc((size_t)(t > 0 ? t : 1), sizeof(int64_t *));
    /* a reduced column holds positive edges only, so at most m entries */
    scratch = malloc((size_t)(m + 3) * sizeof(int64_t));
    work = malloc((size_t)(m + 3) * sizeof(int64_t));
    if (!parent || !status || !owner || !len || !cols || !scratch || !work) {
        PyErr_NoMemory();
        goto done;
    }
    for (int64_t v = 0; v < nv; v++) parent[v] = v;
    for (int64_t e = 0; e < m; e++) {
        int64_t a = uf_find(parent, E[2 * e]), b = uf_find(parent, E[2 * e + 1]);
        owner[e] = -1;
        if (a == b) status[e] = -1; /* positive: closes a cycle */
        else {
            status[e] = -2; /* negative: merges two components */
            if (a < b) parent[b] = a;
            else parent[a] = b;
        }
    }
    for (int64_t j = 0; j < t; j++) {
        /* the boundary of triangle j restricted to positive edges, sorted decreasing */
        int64_t n = 0;
        for (int q = 0; q < 3; q++) {
            int64_t e = T[3 * j + q];
            if (status[e] == -2) continue;
            int64_t p = n++;
            while (p > 0 && scratch[p - 1] < e) scratch[p] = scratch[p - 1], p--;
            scratch[p] = e;
        }
        /* a repeated edge cancels over Z/2 */
        int64_t k = 0;
        for (int64_t i = 0; i < n; i++) {
            if (k > 0 && scratch[k - 1] == scratch[i]) k--;
            else scratch[k++] = scratch[i];
        }
        n = k;
        while (n > 0 && owner[scratch[0]] >= 0) {
            int64_t o = owner[scratch[0]];
            n = add_columns(scratch, n, cols[o], len[o], work);
            int64_t *swap = scratch;
            scratch = work;
            work = swap;
        }
        if (n > 0) {
            owner[scratch[0]] = j;
            status[scratch[0]] = j;
            cols[j] = malloc((size_t)n * sizeof(int64_t));
            if (!cols[j]) {
                PyErr_NoMemory();
                goto done;
            }
            memcpy(cols[j], scratch, (size_t)n * sizeof(int64_t));
            len[j] = n;
        }
    }
    out = PyBytes_FromStringAndSize((const char *)status, (Py_ssize_t)(m * (Py_ssize_t)sizeof(int64_t)));

done:
    if (cols)
        for (int64_t j = 0; j < t; j++) free(cols[j]);
    free(cols), free(len), free(parent), free(status), free(owner), free(scratch), free(work);
    PyBuffer_Release(&tv);
    PyBuffer_Release(&ev);
    return out;
}

static PyMethodDef methods[] = {
    {"h1_pairs", h1_pairs, METH_VARARGS, h1_pairs_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_persistence", "H1 persistence pairs of a filtered 2-complex over Z/2 (see geometry.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__persistence(void) { return PyModule_Create(&module); }
