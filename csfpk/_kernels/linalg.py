"""Small dense linear algebra for the kernels, as plain loops (numba).

The kernels work on matrices of a few to a few tens of rows, where BLAS/LAPACK calls cost more
in call overhead than in arithmetic, and where numba's ``@`` / ``np.linalg`` typing (one BLAS or
LAPACK binding per shape, layout and dtype, each linked into every caller) dominates the cold
compile time. These loops compile to a few small functions instead.

Methods (Golub & Van Loan, *Matrix Computations*, 4th ed., 2013):

* ``matmul`` — C = A·B, the ijk (dot product) loop of §1.1.10 (Algorithm 1.1.5), each entry
  summed in index order into a scalar (a reduction LLVM does not vectorise: small code);
* ``lu_factor`` — Gaussian elimination with partial pivoting, P·A = L·U, in place (§3.4.3,
  Algorithm 3.4.1), unit lower L below the diagonal, U on and above it, row swaps in ``piv``
  (LAPACK convention: row k was swapped with row piv[k]);
* ``lu_solve`` / ``lu_solve_matrix`` — forward then back substitution (§3.1, Algorithms 3.1.1
  and 3.1.2) with the row swaps of ``lu_factor`` applied to the right-hand side(s) first;
* ``lu_det`` — det(A) = ±Π U_kk (§3.2.1 / 3.4), the sign from the number of row swaps; used as the
  singularity test in place of ``np.linalg.det``;
* ``matvec`` / ``matvec_add`` — y = A·x and y = b + A·x (the same dot-product loop);
* ``norm1`` — ‖A‖₁, the largest absolute column sum (§2.3.2), for the scaling of ``expm`` and the
  sub-step length of the exact metrics.

All functions work in place on preallocated arrays, allocate nothing and return plain values.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def matmul(A, B, C):
    """C ← A·B for A (n×k), B (k×m), C (n×m). C must not share memory with A or B."""
    n = A.shape[0]
    k = A.shape[1]
    m = B.shape[1]
    for i in range(n):
        for j in range(m):
            s = 0.0
            for p in range(k):
                s += A[i, p] * B[p, j]
            C[i, j] = s


@njit(cache=True, nogil=True)
def matvec(A, x, y):
    """y ← A·x for A (n×n). y must not share memory with x."""
    n = A.shape[0]
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += A[i, j] * x[j]
        y[i] = s


@njit(cache=True, nogil=True)
def matvec_add(A, x, b, y):
    """y ← b + A·x for A (n×n), summed from b[i] in index order. y must not share memory with x."""
    n = A.shape[0]
    for i in range(n):
        s = b[i]
        for j in range(n):
            s += A[i, j] * x[j]
        y[i] = s


@njit(cache=True, nogil=True)
def norm1(A):
    """‖A‖₁, the largest absolute column sum."""
    n = A.shape[0]
    best = 0.0
    for j in range(A.shape[1]):
        s = 0.0
        for i in range(n):
            s += abs(A[i, j])
        best = max(best, s)
    return best


@njit(cache=True, nogil=True)
def lu_factor(A, piv):
    """In-place LU factorisation with partial pivoting (Doolittle, Golub & Van Loan Alg. 3.4.1).

    On return A holds L (unit diagonal, below) and U (on and above the diagonal) of P·A = L·U
    and piv[k] the row swapped with row k at step k. Returns False (A partly overwritten) if a
    pivot column is zero or not finite, i.e. A is singular to working precision or holds NaN/inf.
    """
    n = A.shape[0]
    for kk in range(n):
        p = kk
        amax = abs(A[kk, kk])
        for i in range(kk + 1, n):
            v = abs(A[i, kk])
            if v > amax:
                amax = v
                p = i
        if not (amax > 0.0) or not np.isfinite(amax):
            return False
        piv[kk] = p
        if p != kk:
            for j in range(n):
                tmp = A[kk, j]
                A[kk, j] = A[p, j]
                A[p, j] = tmp
        inv = 1.0 / A[kk, kk]
        for i in range(kk + 1, n):
            lik = A[i, kk] * inv
            A[i, kk] = lik
            if lik != 0.0:
                for j in range(kk + 1, n):
                    A[i, j] -= lik * A[kk, j]
    return True


@njit(cache=True, nogil=True)
def lu_solve(LU, piv, b):
    """Solve A·x = b in place (b ← x) with the factors of ``lu_factor`` (G&VL Alg. 3.1.1, 3.1.2)."""
    n = LU.shape[0]
    for kk in range(n):
        p = piv[kk]
        if p != kk:
            tmp = b[kk]
            b[kk] = b[p]
            b[p] = tmp
    for i in range(n):
        s = b[i]
        for j in range(i):
            s -= LU[i, j] * b[j]
        b[i] = s
    for i in range(n - 1, -1, -1):
        s = b[i]
        for j in range(i + 1, n):
            s -= LU[i, j] * b[j]
        b[i] = s / LU[i, i]


@njit(cache=True, nogil=True)
def lu_solve_matrix(LU, piv, B):
    """Solve A·X = B in place (B ← X, B of shape n×m) with the factors of ``lu_factor``.

    Same substitutions as ``lu_solve``, column by column, with the loops ordered along rows of B.
    """
    n = LU.shape[0]
    m = B.shape[1]
    for kk in range(n):
        p = piv[kk]
        if p != kk:
            for j in range(m):
                tmp = B[kk, j]
                B[kk, j] = B[p, j]
                B[p, j] = tmp
    for i in range(n):
        for k in range(i):
            lik = LU[i, k]
            for j in range(m):
                B[i, j] -= lik * B[k, j]
    for i in range(n - 1, -1, -1):
        for k in range(i + 1, n):
            uik = LU[i, k]
            for j in range(m):
                B[i, j] -= uik * B[k, j]
        inv = LU[i, i]
        for j in range(m):
            B[i, j] = B[i, j] / inv


@njit(cache=True, nogil=True)
def lu_det(LU, piv):
    """det(A) from the factors of ``lu_factor``: the product of the pivots U_kk, negated per swap."""
    n = LU.shape[0]
    d = 1.0
    for kk in range(n):
        d *= LU[kk, kk]
        if piv[kk] != kk:
            d = -d
    return d
