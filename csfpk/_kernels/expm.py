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

_B = np.array([64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
               129060195264000.0, 10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0,
               40840800.0, 960960.0, 16380.0, 182.0, 1.0])
_THETA13 = 5.371920351148152


@njit(cache=True, nogil=True)
def expm(A):
    """exp(A) for a small dense float64 matrix (see module docstring)."""
    n = A.shape[0]
    norm = 0.0
    for j in range(n):
        s = 0.0
        for i in range(n):
            s += abs(A[i, j])
        norm = max(norm, s)
    s = 0
    if norm > _THETA13:
        s = int(np.ceil(np.log2(norm / _THETA13)))
    B = A / (2.0 ** s)
    ident = np.eye(n)
    B2 = B @ B
    B4 = B2 @ B2
    B6 = B2 @ B4
    b = _B
    U = B @ (B6 @ (b[13] * B6 + b[11] * B4 + b[9] * B2) + b[7] * B6 + b[5] * B4 + b[3] * B2 + b[1] * ident)
    V = B6 @ (b[12] * B6 + b[10] * B4 + b[8] * B2) + b[6] * B6 + b[4] * B4 + b[2] * B2 + b[0] * ident
    R = np.linalg.solve(V - U, V + U)
    for _ in range(s):
        R = R @ R
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
    return X[:n, :n].copy(), X[:n, n:].copy()
