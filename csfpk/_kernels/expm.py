"""Matrix exponential and its integral, in numba.

``expm`` is the scaling-and-squaring Padé(13) algorithm of Higham (2005), SIAM J Matrix Anal Appl
26:1179 (Algorithm 2.3, the degree-13 branch only, which is accurate to unit roundoff for every
norm): with s = max(0, ⌈log2(‖A‖₁/θ₁₃)⌉), θ₁₃ = 5.3719…, and B = A/2ˢ,

    r₁₃(B) = (V − U)⁻¹(V + U),   U = B·Σ b_odd B^(2k),   V = Σ b_even B^(2k),   e^A = r₁₃(B)^(2ˢ).

``propagators`` returns E(h) = exp(K·h) and Φ(h) = ∫₀ʰ exp(K·s) ds from one exponential of the
block matrix [[K, I], [0, 0]]·h (Van Loan 1978, IEEE Trans Autom Control 23:395), whose upper
blocks are E(h) and Φ(h). Φ(h)·r is the state an infusion r (mg/h) adds over h from zero.
"""

import numpy as np
from numba import njit

from .linalg import lu_factor, lu_solve_matrix, matmul, norm1

_B = np.array([64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
               129060195264000.0, 10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0,
               40840800.0, 960960.0, 16380.0, 182.0, 1.0])
_THETA13 = 5.371920351148152


@njit(cache=True, nogil=True)
def expm(A):
    """exp(A) for a small dense float64 matrix (see module docstring).

    Products and the solve are the loops of ``linalg`` (``matmul``, LU with partial pivoting);
    a singular V − U (only for non-finite input) gives a NaN matrix.
    """
    n = A.shape[0]
    norm = norm1(A)
    s = 0
    if norm > _THETA13:
        s = int(np.ceil(np.log2(norm / _THETA13)))
    scale = 2.0 ** s
    b = _B
    B = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            B[i, j] = A[i, j] / scale
    B2 = np.empty((n, n))
    B4 = np.empty((n, n))
    B6 = np.empty((n, n))
    T = np.empty((n, n))
    W = np.empty((n, n))
    matmul(B, B, B2)
    matmul(B2, B2, B4)
    matmul(B2, B4, B6)
    # U = B·(B6·(b13·B6 + b11·B4 + b9·B2) + b7·B6 + b5·B4 + b3·B2 + b1·I)
    for i in range(n):
        for j in range(n):
            T[i, j] = b[13] * B6[i, j] + b[11] * B4[i, j] + b[9] * B2[i, j]
    matmul(B6, T, W)
    for i in range(n):
        for j in range(n):
            W[i, j] = W[i, j] + b[7] * B6[i, j] + b[5] * B4[i, j] + b[3] * B2[i, j]
        W[i, i] += b[1]
    U = np.empty((n, n))
    matmul(B, W, U)
    # V = B6·(b12·B6 + b10·B4 + b8·B2) + b6·B6 + b4·B4 + b2·B2 + b0·I
    for i in range(n):
        for j in range(n):
            T[i, j] = b[12] * B6[i, j] + b[10] * B4[i, j] + b[8] * B2[i, j]
    V = W
    matmul(B6, T, V)
    for i in range(n):
        for j in range(n):
            V[i, j] = V[i, j] + b[6] * B6[i, j] + b[4] * B4[i, j] + b[2] * B2[i, j]
        V[i, i] += b[0]
    # r13 = (V − U)⁻¹·(V + U)
    P = B2
    R = B4
    for i in range(n):
        for j in range(n):
            P[i, j] = V[i, j] - U[i, j]
            R[i, j] = V[i, j] + U[i, j]
    piv = np.empty(n, dtype=np.int64)
    if not lu_factor(P, piv):
        for i in range(n):
            for j in range(n):
                R[i, j] = np.nan
        return R
    lu_solve_matrix(P, piv, R)
    Q = B6
    for _ in range(s):
        matmul(R, R, Q)
        R, Q = Q, R
    return R


@njit(cache=True, nogil=True)
def propagators(K, h):
    """Return (E(h), Φ(h)) for rate matrix K and step h >= 0 (see module docstring)."""
    n = K.shape[0]
    M = np.zeros((2 * n, 2 * n))
    for i in range(n):
        for j in range(n):
            M[i, j] = K[i, j] * h
        M[i, n + i] = h
    X = expm(M)
    E = np.empty((n, n))
    P = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            E[i, j] = X[i, j]
            P[i, j] = X[i, n + j]
    return E, P
