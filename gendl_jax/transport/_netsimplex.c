/*
 * Network simplex for the discrete optimal transport LP (the transportation problem):
 *
 *     min_P  sum_ij C_ij P_ij   s.t.  P 1 = a,  P^T 1 = b,  P >= 0,       a_i > 0, b_j > 0.
 *
 * Written for gendl_jax from the textbook algorithm; no code is taken from another solver.
 * References:
 *   R. K. Ahuja, T. L. Magnanti, J. B. Orlin, "Network Flows", 1993, ch. 11 (network simplex,
 *     spanning-tree bases, strongly feasible trees and the leaving-arc rule that prevents cycling);
 *   W. H. Cunningham, "A network simplex method", Math. Programming 11 (1976) (strongly feasible trees);
 *   J. B. Orlin, "A polynomial time primal network simplex algorithm for minimum cost flows",
 *     Math. Programming 78 (1997);
 *   M. D. Grigoriadis, "An efficient implementation of the network simplex method", Math.
 *     Programming Study 26 (1986) (block pricing);
 *   N. Bonneel, M. van de Panne, S. Paris, W. Heidrich, "Displacement interpolation using
 *     Lagrangian mass transport", SIGGRAPH Asia 2011 (network simplex for transport);
 *   F. Glover, D. Klingman, J. Stutz, "Augmented threaded index method for network optimization",
 *     INFOR 12 (1974) (the preorder thread representation of the tree).
 *
 * Graph: n row nodes 0..n-1 (sources) and m column nodes n..n+m-1 (sinks), one uncapacitated arc
 * i -> j per cost entry. A basis is a spanning tree of the n + m nodes with n + m - 1 arcs, stored
 * as a rooted tree: parent[z], the flow on the arc between z and parent[z] (flow[z]), depth[z], and
 * a cyclic preorder thread (thread, rev_thread) with last_succ[z], the last node of z's subtree,
 * so that a subtree is one segment of the thread. Potentials u_i = pot[i], v_j = pot[n + j] make
 * every tree arc tight, C_ij = u_i + v_j; the reduced cost of an arc is C_ij - u_i - v_j and the
 * basis is optimal when none is negative (below -tol).
 *
 * Start: the north-west corner rule in a given order of rows and columns, which yields a
 * spanning tree of real arcs (no artificial arcs, so no big-M constant spoils the potentials).
 * Rooted at the first column, it is strongly feasible: every zero-flow arc points towards the
 * root (a column node is only added to the tree through an arc of positive flow).
 * Pivot: block search for the entering arc (the most negative reduced cost in a block of `block`
 * arcs, sqrt(n m) / 2 by default, scanning on cyclically); the leaving arc is the last blocking arc met when
 * the cycle is traversed along the entering arc's direction from its apex, which keeps the tree
 * strongly feasible and so rules out cycling under degeneracy (Cunningham 1976).
 * The subtree cut off by the leaving arc is re-hung (its stem reversed, its thread segment
 * re-ordered and spliced after the new parent) and only its potentials change; all potentials
 * are recomputed from the tree every n + m pivots (against round-off drift) and at the end,
 * where optimality is checked by a full scan.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int32_t node_t; /* node ids (n + m < 2^31); arc ids i * m + j are int64_t */

typedef struct {
    int64_t n, m, N;
    const void *C; /* (n, m) costs, float64 or float32 (read as exact doubles) */
    int f32;
    double *pot, *flow;
    node_t *parent, *depth, *thread, *rev_thread, *last_succ;
    node_t *first_child, *next_sib, *stem, *piece; /* child lists: the start only; scratch for pivots */
    int64_t pos, block;
    double tol;
} NS;

static void attach(NS *s, int64_t z, int64_t p) {
    s->parent[z] = p;
    s->next_sib[z] = s->first_child[p];
    s->first_child[p] = z;
}

/* Preorder thread (cyclic: the last node threads back to the root) and last_succ[z], the last node
 * of z's subtree in that order, from the child lists of the start. */
static void build_thread(NS *s, int64_t root) {
    int64_t z = root, last = root;
    for (;;) {
        if (z != root) {
            s->thread[last] = z;
            s->rev_thread[z] = last;
            last = z;
        }
        if (s->first_child[z] >= 0) {
            z = s->first_child[z];
            continue;
        }
        for (;;) { /* z's subtree is done: climb until a node with a next sibling */
            s->last_succ[z] = last;
            if (z == root) {
                s->thread[last] = root;
                s->rev_thread[root] = last;
                return;
            }
            if (s->next_sib[z] >= 0) {
                z = s->next_sib[z];
                break;
            }
            z = s->parent[z];
        }
    }
}

static inline double cost_at(const NS *s, int64_t k) {
    return s->f32 ? (double)((const float *)s->C)[k] : ((const double *)s->C)[k];
}

/* Cost of the tree arc between z and its parent. */
static inline double arc_cost(const NS *s, int64_t z, int64_t p) {
    return z < s->n ? cost_at(s, z * s->m + (p - s->n)) : cost_at(s, p * s->m + (z - s->n));
}

/* Potentials and depths from scratch: pot[root] = 0, every tree arc tight (parents come first in
 * the preorder thread). */
static void recompute_potentials(NS *s, int64_t root) {
    s->pot[root] = 0.0;
    s->depth[root] = 0;
    for (int64_t z = s->thread[root]; z != root; z = s->thread[z]) {
        int64_t p = s->parent[z];
        s->pot[z] = arc_cost(s, z, p) - s->pot[p];
        s->depth[z] = s->depth[p] + 1;
    }
}

/* Block search: index of an arc with reduced cost < -tol (the most negative of the first block
 * that has one), or -1 when there is none. One version per cost type (float32 costs halve the
 * memory traffic of this loop, which dominates on large problems; they convert to double exactly). */
#define DEFINE_FIND_ENTERING(NAME, T)                                                 \
    static int64_t NAME(NS *s) {                                                      \
        const int64_t n = s->n, m = s->m, total = n * m, B = s->block;                \
        const T *C = (const T *)s->C;                                                 \
        const double *pot = s->pot, *v = s->pot + n;                                  \
        double best_r = -s->tol;                                                      \
        int64_t best = -1, k = s->pos, scanned = 0, in_block = 0;                     \
        while (scanned < total) {                                                     \
            int64_t i = k / m, j = k - i * m;                                         \
            int64_t seg = m - j;                                                      \
            if (seg > B - in_block) seg = B - in_block;                               \
            if (seg > total - scanned) seg = total - scanned;                         \
            const T *c = C + k;                                                       \
            const double *vj = v + j;                                                 \
            const double ui = pot[i];                                                 \
            double seg_min = best_r;                                                  \
            _Pragma("omp simd reduction(min : seg_min)")                              \
            for (int64_t t = 0; t < seg; t++) {                                       \
                double r = (double)c[t] - ui - vj[t];                                 \
                seg_min = r < seg_min ? r : seg_min;                                  \
            }                                                                         \
            if (seg_min < best_r) {                                                   \
                for (int64_t t = 0; t < seg; t++) {                                   \
                    if ((double)c[t] - ui - vj[t] == seg_min) {                       \
                        best = k + t;                                                 \
                        best_r = seg_min;                                             \
                        break;                                                        \
                    }                                                                 \
                }                                                                     \
            }                                                                         \
            k += seg;                                                                 \
            if (k == total) k = 0;                                                    \
            scanned += seg;                                                           \
            in_block += seg;                                                          \
            if (in_block == B) {                                                      \
                if (best >= 0) break;                                                 \
                in_block = 0;                                                         \
            }                                                                         \
        }                                                                             \
        s->pos = k;                                                                   \
        return best;                                                                  \
    }

DEFINE_FIND_ENTERING(find_entering_f64, double)
DEFINE_FIND_ENTERING(find_entering_f32, float)

static int64_t find_entering(NS *s) { return s->f32 ? find_entering_f32(s) : find_entering_f64(s); }

/* One pivot on entering arc (ei, ej). */
static void pivot(NS *s, int64_t e) {
    const int64_t n = s->n, m = s->m;
    node_t *parent = s->parent, *depth = s->depth;
    double *flow = s->flow, *pot = s->pot;
    const int64_t p = e / m, q = n + (e - (e / m) * m);
    const double r_e = cost_at(s, e) - pot[p] - pot[q];

    int64_t x = p, y = q;
    while (x != y) {
        if (depth[x] > depth[y])
            x = parent[x];
        else if (depth[y] > depth[x])
            y = parent[y];
        else {
            x = parent[x];
            y = parent[y];
        }
    }
    const int64_t join = x;

    /* Cycle oriented along the entering arc p -> q: down from the apex to p, then p -> q, then up
     * from q to the apex. On the p side the row nodes' arcs lose flow, on the q side the column
     * nodes' arcs do. Leaving arc: the last blocking arc in that order, i.e. the one nearest the
     * apex on the q side, else the one nearest p on the p side. */
    double theta_p = INFINITY, theta_q = INFINITY;
    int64_t leave_p = -1, leave_q = -1;
    for (int64_t z = p; z != join; z = parent[z])
        if (z < n && flow[z] < theta_p) {
            theta_p = flow[z];
            leave_p = z;
        }
    for (int64_t z = q; z != join; z = parent[z])
        if (z >= n && flow[z] <= theta_q) {
            theta_q = flow[z];
            leave_q = z;
        }
    int64_t leave, u_in, v_in;
    double theta;
    if (leave_q >= 0 && theta_q <= theta_p) {
        leave = leave_q, theta = theta_q, u_in = q, v_in = p;
    } else {
        leave = leave_p, theta = theta_p, u_in = p, v_in = q;
    }

    if (theta > 0) {
        for (int64_t z = p; z != join; z = parent[z]) flow[z] = z < n ? flow[z] - theta : flow[z] + theta;
        for (int64_t z = q; z != join; z = parent[z]) flow[z] = z >= n ? flow[z] - theta : flow[z] + theta;
    }
    flow[leave] = 0.0;

    /* Re-hang T2, the subtree cut off by the leaving arc, under v_in, rooted at u_in: the stem
     * u_in = s_0, s_1 = parent(s_0), ..., s_k = leave is reversed. In the preorder thread T2 is the
     * segment [leave .. last_succ[leave]]; its new order is s_0's old subtree, then for t = 1..k
     * the part of s_t's old subtree outside s_{t-1}'s, i.e. [s_t .. rev_thread[s_{t-1}]] followed by
     * [thread[last_succ[s_{t-1}]] .. last_succ[s_t]] (empty when both subtrees end together). It is
     * spliced in right after v_in. */
    node_t *thread = s->thread, *rev = s->rev_thread, *last = s->last_succ, *stem = s->stem, *piece = s->piece;
    int64_t k = 0;
    for (int64_t z = u_in;; z = parent[z]) {
        stem[k++] = (node_t)z;
        if (z == leave) break;
    }
    /* Pieces from the old thread, read before anything changes: (start, end) pairs. */
    int64_t np = 0;
    piece[np++] = stem[0];
    piece[np++] = last[stem[0]];
    for (int64_t t = 1; t < k; t++) {
        piece[np++] = stem[t];
        piece[np++] = rev[stem[t - 1]];
        if (last[stem[t - 1]] != last[stem[t]]) {
            piece[np++] = thread[last[stem[t - 1]]];
            piece[np++] = last[stem[t]];
        }
    }
    /* Cut T2 out of the thread; ancestors whose subtree ended with it now end before it. */
    {
        const int64_t old_last = last[leave], before = rev[leave], after = thread[old_last];
        thread[before] = (node_t)after;
        rev[after] = (node_t)before;
        for (int64_t w = parent[leave]; w >= 0 && last[w] == old_last; w = parent[w]) last[w] = (node_t)before;
    }
    /* Chain the pieces. */
    for (int64_t t = 2; t < np; t += 2) {
        thread[piece[t - 1]] = piece[t];
        rev[piece[t]] = piece[t - 1];
    }
    const int64_t t2_last = piece[np - 1];
    /* Reverse the stem: each arc's flow moves to its new child end. */
    {
        double carried = theta;
        int64_t up = v_in;
        for (int64_t t = 0; t < k; t++) {
            const int64_t z = stem[t];
            const double f = flow[z];
            parent[z] = (node_t)up;
            flow[z] = carried;
            last[z] = (node_t)t2_last;
            carried = f;
            up = z;
        }
    }
    /* Splice T2 in after v_in; subtrees that ended at v_in now end at T2's last node. */
    {
        const int64_t after = thread[v_in];
        thread[v_in] = (node_t)u_in;
        rev[u_in] = (node_t)v_in;
        thread[t2_last] = (node_t)after;
        rev[after] = (node_t)t2_last;
        for (int64_t w = v_in; w >= 0 && last[w] == v_in; w = parent[w]) last[w] = (node_t)t2_last;
    }

    /* Potentials of T2 shift by +-r_e (the entering arc becomes tight); depths follow. */
    const int in_is_row = u_in < n;
    for (int64_t z = u_in;; z = thread[z]) {
        pot[z] += ((z < n) == in_is_row) ? r_e : -r_e;
        depth[z] = depth[parent[z]] + 1;
        if (z == t2_last) break;
    }
}

/* North-west corner start in the order (rows[k], cols[k]); tree rooted at node n + cols[0]. */
static void northwest_start(NS *s, const double *a, const double *b, const int64_t *rows, const int64_t *cols) {
    const int64_t n = s->n, m = s->m;
    for (int64_t z = 0; z < s->N; z++) s->first_child[z] = -1;
    int64_t root = n + cols[0];
    s->parent[root] = -1;
    s->flow[root] = 0.0;
    int64_t ii = 0, jj = 0;
    double ra = a[rows[0]], rb = b[cols[0]];
    /* first cell (rows[0], cols[0]): the row hangs under the root column */
    double f = ra < rb ? ra : rb;
    attach(s, rows[0], root);
    s->flow[rows[0]] = f;
    ra -= f;
    rb -= f;
    while (ii < n - 1 || jj < m - 1) {
        /* Move right (new column under the current row) only with mass left in the row, so that
         * every column hangs on an arc of positive flow; otherwise move down. */
        int right = (jj < m - 1) && (ii == n - 1 || ra > 0.0);
        if (right) {
            jj++;
            rb = b[cols[jj]];
            int64_t z = n + cols[jj];
            f = ii == n - 1 ? rb : (ra < rb ? ra : rb);
            attach(s, z, rows[ii]);
            s->flow[z] = f;
        } else {
            ii++;
            ra = a[rows[ii]];
            int64_t z = rows[ii];
            f = jj == m - 1 ? ra : (ra < rb ? ra : rb);
            if (f < 0.0) f = 0.0;
            attach(s, z, n + cols[jj]);
            s->flow[z] = f;
        }
        ra -= f;
        rb -= f;
        if (ra < 0.0) ra = 0.0;
        if (rb < 0.0) rb = 0.0;
    }
    build_thread(s, root);
    recompute_potentials(s, root);
}

static int read_f64(PyObject *obj, Py_buffer *view, int64_t want, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize != 8 || view->format == NULL || strcmp(view->format, "d") != 0 || view->len != want * 8) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous float64 buffer of %lld entries", name,
                     (long long)want);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The cost buffer: float64 or float32, C-contiguous, n * m entries. Sets *f32. */
static int read_cost(PyObject *obj, Py_buffer *view, int64_t want, int *f32) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *f = view->format;
    int ok_d = f && view->itemsize == 8 && strcmp(f, "d") == 0, ok_f = f && view->itemsize == 4 && strcmp(f, "f") == 0;
    if (!(ok_d || ok_f) || view->len != want * view->itemsize) {
        PyErr_Format(PyExc_ValueError, "cost must be a C-contiguous float64 or float32 buffer of %lld entries",
                     (long long)want);
        PyBuffer_Release(view);
        return -1;
    }
    *f32 = ok_f;
    return 0;
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

static int is_permutation(const int64_t *p, int64_t k) {
    char *seen = calloc((size_t)k, 1);
    if (!seen) return 0;
    int ok = 1;
    for (int64_t t = 0; t < k && ok; t++) {
        if (p[t] < 0 || p[t] >= k || seen[p[t]]) ok = 0;
        else seen[p[t]] = 1;
    }
    free(seen);
    return ok;
}

PyDoc_STRVAR(solve_doc,
             "solve(cost, a, b, row_order, col_order, n, m, max_iter, block, tol_rel)\n"
             "-> (rows, cols, flows, u, v, iterations, converged)\n\n"
             "Network simplex for min <C, P> s.t. P 1 = a, P^T 1 = b, P >= 0.\n"
             "cost: C-contiguous float64 or float32 (n, m) buffer, finite; a (n,), b (m,) float64 with\n"
             "positive entries and "
"equal totals; row_order, col_order: int64 permutations giving the north-west corner\n"
             "order of the start. max_iter: pivot limit; block: pricing block size; reduced costs below\n"
             "-tol = -tol_rel * max|C| count as negative. Returns the n + m - 1 basic arcs (rows, cols: int64 bytes; flows: float64\n"
             "bytes), the potentials u (n,), v (m,) as float64 bytes with u_i + v_j = C_ij on basic arcs\n"
             "and C_ij - u_i - v_j >= -tol everywhere when converged, the pivot count and a converged flag\n"
             "(False when max_iter pivots were done first).");

static PyObject *solve(PyObject *self, PyObject *args) {
    PyObject *cost_o, *a_o, *b_o, *ro_o, *co_o;
    long long max_iter, block;
    double tol_rel;
    Py_ssize_t n_, m_;
    if (!PyArg_ParseTuple(args, "OOOOOnnLLd", &cost_o, &a_o, &b_o, &ro_o, &co_o, &n_, &m_, &max_iter, &block, &tol_rel))
        return NULL;
    const int64_t n = n_, m = m_;
    if (n < 1 || m < 1 || n + m >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "need n >= 1 rows, m >= 1 columns and n + m < 2^31");
        return NULL;
    }
    if (block < 1) block = 1;
    Py_buffer cv, av, bv, rv, colv;
    int f32 = 0;
    if (read_cost(cost_o, &cv, n * m, &f32) < 0) return NULL;
    if (read_f64(a_o, &av, n, "a") < 0) goto fail_c;
    if (read_f64(b_o, &bv, m, "b") < 0) goto fail_a;
    if (read_i64(ro_o, &rv, n, "row_order") < 0) goto fail_b;
    if (read_i64(co_o, &colv, m, "col_order") < 0) goto fail_r;
    const double *a = av.buf, *b = bv.buf;
    for (int64_t i = 0; i < n; i++)
        if (!(a[i] > 0.0) || !isfinite(a[i])) {
            PyErr_SetString(PyExc_ValueError, "a must hold finite positive masses (drop zero masses first)");
            goto fail_all;
        }
    for (int64_t j = 0; j < m; j++)
        if (!(b[j] > 0.0) || !isfinite(b[j])) {
            PyErr_SetString(PyExc_ValueError, "b must hold finite positive masses (drop zero masses first)");
            goto fail_all;
        }
    if (!is_permutation(rv.buf, n) || !is_permutation(colv.buf, m)) {
        PyErr_SetString(PyExc_ValueError, "row_order and col_order must be permutations of range(n), range(m)");
        goto fail_all;
    }
    double scale = 0.0; /* max |C|, and a finiteness check, in one pass */
    if (f32) {
        const float *C = cv.buf;
#pragma omp simd reduction(max : scale)
        for (int64_t k = 0; k < n * m; k++) {
            double c = fabs((double)C[k]);
            scale = c > scale ? c : scale;
        }
    } else {
        const double *C = cv.buf;
#pragma omp simd reduction(max : scale)
        for (int64_t k = 0; k < n * m; k++) {
            double c = fabs(C[k]);
            scale = c > scale ? c : scale;
        }
    }
    if (!isfinite(scale)) { /* an inf gives inf; a NaN is caught below */
        PyErr_SetString(PyExc_ValueError, "cost must be finite");
        goto fail_all;
    }
    {
        int nan = 0;
        if (f32) {
            const float *C = cv.buf;
            for (int64_t k = 0; k < n * m; k++) nan |= C[k] != C[k];
        } else {
            const double *C = cv.buf;
            for (int64_t k = 0; k < n * m; k++) nan |= C[k] != C[k];
        }
        if (nan) {
            PyErr_SetString(PyExc_ValueError, "cost must be finite");
            goto fail_all;
        }
    }

    NS s;
    s.n = n;
    s.m = m;
    s.N = n + m;
    s.C = cv.buf;
    s.f32 = f32;
    s.pos = 0;
    s.block = block;
    s.tol = tol_rel * (scale > DBL_MIN ? scale : DBL_MIN);
    s.pot = malloc(sizeof(double) * s.N);
    s.flow = malloc(sizeof(double) * s.N);
    s.parent = malloc(sizeof(node_t) * s.N);
    s.first_child = malloc(sizeof(node_t) * s.N);
    s.next_sib = malloc(sizeof(node_t) * s.N);
    s.thread = malloc(sizeof(node_t) * s.N);
    s.rev_thread = malloc(sizeof(node_t) * s.N);
    s.last_succ = malloc(sizeof(node_t) * s.N);
    s.stem = malloc(sizeof(node_t) * s.N);
    s.piece = malloc(sizeof(node_t) * 4 * s.N);
    s.depth = malloc(sizeof(node_t) * s.N);
    if (!s.pot || !s.flow || !s.parent || !s.first_child || !s.next_sib || !s.depth || !s.thread || !s.rev_thread ||
        !s.last_succ || !s.stem || !s.piece) {
        PyErr_NoMemory();
        goto fail_mem;
    }

    long long iterations = 0;
    int converged = 0;
    int64_t root;
    Py_BEGIN_ALLOW_THREADS;
    northwest_start(&s, a, b, rv.buf, colv.buf);
    root = n + ((const int64_t *)colv.buf)[0];
    const long long refresh = s.N;
    for (;;) {
        int64_t e = find_entering(&s);
        if (e < 0) {
            /* Confirm with potentials rebuilt from the tree (no accumulated round-off). */
            recompute_potentials(&s, root);
            s.pos = 0;
            e = find_entering(&s);
            if (e < 0) {
                converged = 1;
                break;
            }
        }
        if (iterations >= max_iter) break;
        pivot(&s, e);
        iterations++;
        if (iterations % refresh == 0) recompute_potentials(&s, root);
    }
    if (!converged) recompute_potentials(&s, root);
    Py_END_ALLOW_THREADS;

    {
        const int64_t narcs = s.N - 1;
        PyObject *rows_b = PyBytes_FromStringAndSize(NULL, narcs * 8);
        PyObject *cols_b = PyBytes_FromStringAndSize(NULL, narcs * 8);
        PyObject *flows_b = PyBytes_FromStringAndSize(NULL, narcs * 8);
        PyObject *u_b = PyBytes_FromStringAndSize((const char *)s.pot, n * 8);
        PyObject *v_b = PyBytes_FromStringAndSize((const char *)(s.pot + n), m * 8);
        PyObject *out = NULL;
        if (rows_b && cols_b && flows_b && u_b && v_b) {
            int64_t *ro = (int64_t *)PyBytes_AS_STRING(rows_b), *co = (int64_t *)PyBytes_AS_STRING(cols_b);
            double *fo = (double *)PyBytes_AS_STRING(flows_b);
            int64_t k = 0;
            for (int64_t z = 0; z < s.N; z++) {
                if (z == root) continue;
                int64_t p = s.parent[z];
                ro[k] = z < n ? z : p;
                co[k] = (z < n ? p : z) - n;
                fo[k] = s.flow[z];
                k++;
            }
            out = Py_BuildValue("(OOOOOLO)", rows_b, cols_b, flows_b, u_b, v_b, iterations,
                                converged ? Py_True : Py_False);
        }
        Py_XDECREF(rows_b);
        Py_XDECREF(cols_b);
        Py_XDECREF(flows_b);
        Py_XDECREF(u_b);
        Py_XDECREF(v_b);
        free(s.pot), free(s.flow), free(s.parent), free(s.first_child), free(s.next_sib), free(s.depth),
            free(s.thread), free(s.rev_thread), free(s.last_succ), free(s.stem), free(s.piece);
        PyBuffer_Release(&colv);
        PyBuffer_Release(&rv);
        PyBuffer_Release(&bv);
        PyBuffer_Release(&av);
        PyBuffer_Release(&cv);
        return out;
    }

fail_mem:
    free(s.pot), free(s.flow), free(s.parent), free(s.first_child), free(s.next_sib), free(s.depth), free(s.thread),
        free(s.rev_thread), free(s.last_succ), free(s.stem), free(s.piece);
fail_all:
    PyBuffer_Release(&colv);
fail_r:
    PyBuffer_Release(&rv);
fail_b:
    PyBuffer_Release(&bv);
fail_a:
    PyBuffer_Release(&av);
fail_c:
    PyBuffer_Release(&cv);
    return NULL;
}

static PyMethodDef methods[] = {
    {"solve", solve, METH_VARARGS, solve_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_netsimplex", "Network simplex for the transportation problem (see netsimplex.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__netsimplex(void) { return PyModule_Create(&module); }
